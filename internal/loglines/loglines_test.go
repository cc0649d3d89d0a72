package loglines

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func read(t *testing.T, r io.Reader) ([]string, error) {
	t.Helper()
	var got []string
	l := New(r)
	for l.Scan() {
		got = append(got, l.Text())
	}
	return got, l.Err()
}

func TestLinesSkipsALineTooLong(t *testing.T) {
	long := strings.Repeat("x", 2*MaxLine+10)
	for _, c := range []struct {
		in   string
		want string
	}{
		{"a\r\nb\n\nc", "a|b||c"},
		{"a\n" + long + "\nb\n", "a|b"},
		{long + "\n" + long + "\n", ""},
		{"a\n" + long, "a"},
		{strings.Repeat("y", MaxLine-1) + "\nz\n", strings.Repeat("y", MaxLine-1) + "|z"},
	} {
		got, err := read(t, strings.NewReader(c.in))
		if err != nil || strings.Join(got, "|") != c.want {
			t.Errorf("%.20q: %d lines %.40q, %v", c.in, len(got), strings.Join(got, "|"), err)
		}
	}
}

func TestLinesReportsAReadError(t *testing.T) {
	boom := errors.New("boom")
	got, err := read(t, io.MultiReader(strings.NewReader("a\n"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || len(got) != 1 {
		t.Errorf("%q, %v", got, err)
	}
}
