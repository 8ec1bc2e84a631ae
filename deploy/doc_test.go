// Package deploy holds the checks of the files that package Tributary for
// others to run: the Dockerfile at the repository root and the local stack
// of docker-compose.yml with the configuration it mounts from deploy/local
// and grafana/provisioning. These machines have no container engine, so
// the tests check what can be checked without one, for real: the files
// parse with the parsers Docker and Compose use, every file they name
// exists, every address they name is served by the service they name, and
// the build command produces static binaries.
package deploy
