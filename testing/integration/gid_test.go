//go:build integration

package integration

import (
	"os"
	"strconv"
	"syscall"
)

// fileGID is the group ID of a file.
func fileGID(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.Itoa(int(st.Gid))
	}
	return "0"
}
