// Package manifest reads swarmsec.io/v1 manifests: it decodes YAML and JSON
// documents strictly, validates them against what Swarm can enforce, and
// reports every problem with its file, line, column and field path.
//
// Input is treated as hostile: files are size-limited, documents counted,
// alias expansion bounded, and nothing in a manifest can make the decoder
// panic, hang or grow without bound.
package manifest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// Limits on one file. A policy is a few hundred bytes, so these leave room
// for thousands of policies per file while bounding time and memory.
const (
	// MaxFileSize is the largest manifest file read.
	MaxFileSize = 1 << 20
	// MaxDocuments is the most YAML documents one file may hold.
	MaxDocuments = 10000
	// MaxAliasedValues is the most values one file may decode through
	// aliases. Other values each take bytes of the file, so its size bounds
	// them; this bounds the rest and defeats alias bombs.
	MaxAliasedValues = 10000
	// MaxAliasedBytes is the most bytes of text one file may decode through
	// aliases: the typed decode reads a copy of each aliased value, so a
	// long string aliased many times must not multiply.
	MaxAliasedBytes = MaxFileSize
	// MaxErrors is the most errors reported for one file: past it, the
	// file is not checked further and a last error says so.
	MaxErrors = 100
)

// Error is one problem in a manifest. Unknown parts are zero.
type Error struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Error formats as "file:line:col: field: message", leaving out the parts
// that are unknown.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":" + strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// LoadFile reads and decodes one manifest file. Read errors are returned as
// an Error about the file.
func LoadFile(path string) ([]v1.Policy, []Error) {
	data, err := readFile(path)
	if err != nil {
		return nil, []Error{{File: path, Message: err.Error()}}
	}
	return DecodeFile(path, data)
}

// readFile reads a regular file of at most MaxFileSize bytes.
func readFile(path string) ([]byte, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, unwrapPathError(err)
	}
	beforeOpen(path)
	// Open without blocking and check what was opened: a FIFO put in the
	// file's place (after any earlier look at it) would block a plain open
	// until a writer comes.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > MaxFileSize {
		return nil, errTooLarge
	}
	// The file may have grown since Stat.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if len(data) > MaxFileSize {
		return nil, errTooLarge
	}
	return data, nil
}

// beforeOpen lets a test swap a file right before it is opened.
var beforeOpen = func(string) {}

var errTooLarge = fmt.Errorf("file is larger than the limit of %d bytes", MaxFileSize)

// unwrapPathError drops the path from an *os.PathError: Error already names
// the file.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
