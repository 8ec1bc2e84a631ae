// Package exepages gives back the pages of the running executable that
// only start-up touched.
//
// A Go program's code and read-only data are mapped from its file, and the
// kernel maps a page in when it is first touched, with its neighbours
// (fault-around: 64 KiB at a time). Package initialisation touches code and
// type data all over a large binary, so most of it stays mapped, and
// counted in the process's RSS, though steady work uses a fraction: the
// agent maps ~47 MiB of its ~62 MiB of code and read-only data by the end
// of start-up (Prometheus's Kubernetes discovery links client-go's whole
// typed clientset and every API group's types, whose scheme registration
// runs at init) and touches ~15-20 MiB afterwards.
//
// Release unmaps those pages (madvise MADV_DONTNEED on the executable's
// private read-only mappings). They are clean file pages: they stay in the
// page cache, which the kernel reclaims under memory pressure anyway, and a
// page used again is mapped back on its next touch by a minor fault,
// without I/O. Release changes what the process has mapped, not what it
// allocates.
package exepages
