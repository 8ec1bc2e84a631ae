package events

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// The resume ConfigMap is read from the apiserver, where anyone with
// write access to it may have edited it: a bad one is an error naming it,
// never a panic, and a good one comes back as written.
func FuzzParseResume(f *testing.F) {
	f.Add("12345", `[{"uid":"a","count":2,"last":1700000000000000000}]`)
	f.Add("", "")
	f.Add("0", "[]")
	f.Add("007", "null")
	f.Add("99999999999999999999999", `[{"uid":1}]`)
	f.Fuzz(func(t *testing.T, rv, shipped string) {
		cm := &corev1.ConfigMap{Data: map[string]string{keyResourceVersion: rv, keyShipped: shipped}}
		p, err := parseResume(cm)
		if err != nil {
			return
		}
		if p.ResourceVersion != rv {
			t.Fatalf("resource version %q read as %q", rv, p.ResourceVersion)
		}
		if rv != "" {
			if _, err := resourceversion.CompareResourceVersion(rv, "1"); err != nil {
				t.Fatalf("accepted resource version %q: %v", rv, err)
			}
		}
	})
}
