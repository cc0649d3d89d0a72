// Package loglines reads log lines as bufio.Scanner does, but skips a line
// over MaxLine instead of ending there: the engine splits a container's
// line over 16 KiB into parts that its service logs give back joined, and
// one such line must not hide every line after it (a Scanner stops at it
// with ErrTooLong, which its callers took for the end).
package loglines

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// MaxLine is the longest log line read; a longer one is skipped.
const MaxLine = 1 << 20

// Reader reads lines; use it as a bufio.Scanner.
type Reader struct {
	br   *bufio.Reader
	text string
	err  error
}

// New reads the lines of r.
func New(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, MaxLine)} }

// Scan reads the next line (false at the end or on an error).
func (l *Reader) Scan() bool {
	skip := false
	for {
		b, err := l.br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			skip = true
			continue
		case err != nil && !errors.Is(err, io.EOF):
			l.err = err
			return false
		case skip:
			skip = false
			if err != nil {
				return false
			}
			continue
		case err != nil && len(b) == 0:
			return false
		}
		l.text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		return true
	}
}

// Text is the line Scan read, without its end of line.
func (l *Reader) Text() string { return l.text }

// Err is the error that ended the reading, nil at the end.
func (l *Reader) Err() error { return l.err }
