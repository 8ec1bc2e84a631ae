package exepages

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Release unmaps the executable's read-only pages (code, read-only data)
// and returns how many bytes of them were resident. What the process runs
// afterwards is mapped back as it is touched.
func Release() (int64, error) {
	maps, err := readOnlyMappings()
	if err != nil {
		return 0, err
	}
	var released int64
	for _, m := range maps {
		// The mappings are private, read-only and backed by the file, so
		// dropping them loses nothing: a later touch reads the same bytes
		// back from the page cache. Never applied to a writable mapping.
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		released += m.rss
	}
	return released, nil
}

// Resident is the bytes of the executable's read-only mappings now mapped
// in (their Rss in /proc/self/smaps).
func Resident() (int64, error) {
	maps, err := readOnlyMappings()
	var n int64
	for _, m := range maps {
		n += m.rss
	}
	return n, err
}

type mapping struct {
	start, end uintptr
	rss        int64
}

// readOnlyMappings lists the private read-only mappings (r-xp, r--p) of
// the executable's own file, from /proc/self/smaps.
func readOnlyMappings() ([]mapping, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("find the executable: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		out []mapping
		cur *mapping
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if rss, ok := strings.CutPrefix(line, "Rss:"); ok {
			if cur != nil {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rss), " kB"), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("smaps: %q: %w", line, err)
				}
				cur.rss = kb << 10
			}
			continue
		}
		// A mapping's header: "start-end perms offset dev inode [path]";
		// its attribute lines ("Rss:", "Size:", …) start with a name.
		lo, hi, isRange := strings.Cut(fields[0], "-")
		if !isRange || len(fields) < 5 {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		cur = nil
		if len(fields) >= 6 && strings.Join(fields[5:], " ") == exe && (fields[1] == "r-xp" || fields[1] == "r--p") {
			out = append(out, mapping{start: uintptr(start), end: uintptr(end)})
			cur = &out[len(out)-1]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/smaps: %w", err)
	}
	return out, nil
}
