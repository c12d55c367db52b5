package portal

import (
	"bufio"
	"io"
	"strings"
)

// Every CSV the portal writes goes through csvWriter, which neutralises
// formula injection as OWASP's CSV Injection page recommends: anyone can put
// `=HYPERLINK("http://evil","click")` into adv_param1 through a public pixel,
// and a spreadsheet opening the back office's export would run it.
//
//   - a text cell starting with `=`, `+`, `-`, `@`, tab (0x09) or CR (0x0D)
//     is prefixed with a single quote, which spreadsheets read as "this is
//     text" and do not show;
//   - every cell is wrapped in double quotes and its double quotes doubled
//     (RFC 4180), so a `,` or `;` inside a value (`x;=1+1`, for a spreadsheet
//     whose list separator is `;`) cannot start a new cell whose first
//     character would escape the prefix check;
//   - numeric cells (ids, amounts) are ours: formatted from bigint and
//     numeric columns, never caller text. They are not prefixed, so a
//     legitimately negative amount stays a number a spreadsheet can sum. The
//     writer still checks that such a cell is a plain decimal number and
//     prefixes it like text if it is not, so a change upstream cannot turn
//     the exemption into a hole.
type csvWriter struct {
	w       *bufio.Writer
	numeric []bool // by column: produced by our own number formatting
}

func newCSVWriter(w io.Writer, numeric []bool) *csvWriter {
	return &csvWriter{w: bufio.NewWriterSize(w, 16<<10), numeric: numeric}
}

// Write writes one record, each cell neutralised and quoted.
func (c *csvWriter) Write(record []string) error {
	for i, cell := range record {
		if i > 0 {
			_ = c.w.WriteByte(',')
		}
		_ = c.w.WriteByte('"')
		if formulaLike(cell) && !c.ourNumber(i, cell) {
			_ = c.w.WriteByte('\'')
		}
		for {
			j := strings.IndexByte(cell, '"')
			if j < 0 {
				break
			}
			_, _ = c.w.WriteString(cell[:j+1])
			_ = c.w.WriteByte('"')
			cell = cell[j+1:]
		}
		_, _ = c.w.WriteString(cell)
		_ = c.w.WriteByte('"')
	}
	err := c.w.WriteByte('\n')
	return err
}

// ourNumber reports whether cell, in column i, is a number we formatted.
func (c *csvWriter) ourNumber(i int, cell string) bool {
	return i < len(c.numeric) && c.numeric[i] && isDecimal(cell)
}

// Flush writes what is buffered to the underlying writer.
func (c *csvWriter) Flush() error { return c.w.Flush() }

// formulaLike reports whether a spreadsheet would read cell as a formula.
func formulaLike(cell string) bool {
	if cell == "" {
		return false
	}
	switch cell[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// isDecimal reports whether s is an optionally negative decimal number
// (`-12`, `-0.50`), the only thing our numeric formatting produces.
func isDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] >= '0' && s[i] <= '9':
			digits++
		case s[i] == '.' && !dot && digits > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}
