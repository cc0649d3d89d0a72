package manifest

import (
	"bytes"
)

// chunk is the text of one or more YAML documents and the line it starts on.
type chunk struct {
	data []byte
	line int // 1-based line of data's first byte in the file
}

// split cuts a file at its "---" document separators. Parsing each piece on
// its own lets one broken document be reported without losing the others,
// which a single YAML stream cannot do: its parser stops at the first
// syntax error. A "---" at the start of a line always starts a document in
// YAML, even inside a block scalar, so cutting there is safe.
func split(data []byte) []chunk {
	var chunks []chunk
	start, startLine := 0, 1
	onlyDirectives := true // the current chunk holds nothing but %directives
	line := 1
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		text := data[off:next]
		if isSeparator(text) && off > start && !onlyDirectives {
			chunks = append(chunks, chunk{data: data[start:off], line: startLine})
			start, startLine = off, line
			onlyDirectives = true
		} else if !isSeparator(text) && !isBlankOrComment(text) && text[0] != '%' {
			onlyDirectives = false
		}
		off = next
	}
	if start < len(data) || len(chunks) == 0 {
		chunks = append(chunks, chunk{data: data[start:], line: startLine})
	}
	return chunks
}

// isSeparator reports whether a line is a "---" document start marker.
func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	return len(line) == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\n' || line[3] == '\r'
}

func isBlankOrComment(line []byte) bool {
	t := bytes.TrimSpace(line)
	return len(t) == 0 || t[0] == '#'
}
