package traffic

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// maxLine is the longest log line read; a longer one is skipped.
const maxLine = 1 << 20

// lines reads log lines as bufio.Scanner does, but skips a line over
// maxLine instead of ending there: the engine splits an agent's line over
// 16 KiB into parts that its service logs give back joined, and one such
// line must not hide every line after it.
type lines struct {
	br   *bufio.Reader
	text string
	err  error
}

func newLines(r io.Reader) *lines { return &lines{br: bufio.NewReaderSize(r, maxLine)} }

// Scan reads the next line (false at the end or on an error).
func (l *lines) Scan() bool {
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
func (l *lines) Text() string { return l.text }

// Err is the error that ended the reading, nil at the end.
func (l *lines) Err() error { return l.err }
