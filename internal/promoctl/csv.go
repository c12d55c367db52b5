package promoctl

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"promocodes.dev/promo-operator/internal/routing"
)

// Column names of the import CSV (SPEC §6). The first two are required; the
// next three optional. Export adds offer, state, kind and object; import
// accepts and ignores them (offer must match --offer), so an export is a
// valid import file.
const (
	colCode        = "code"
	colAffiliateID = "affiliate_id"
	colStartDate   = "start_date"
	colEndDate     = "end_date"
	colDescription = "description"
	colOffer       = "offer"
	colState       = "state"
	colKind        = "kind"
	colObject      = "object"
)

// MaxDescriptionLen is the longest description, in characters (the API's MaxLength).
const MaxDescriptionLen = 1024

// MaxReportedErrors is how many validation errors are listed; the rest are counted.
const MaxReportedErrors = 100

var knownColumns = []string{colCode, colAffiliateID, colStartDate, colEndDate, colDescription, colOffer, colState, colKind, colObject}

// Row is one valid line of an import file. Dates are Unix seconds; 0 means unset.
type Row struct {
	Line        int
	Code        string
	Folded      string
	AffiliateID int64
	Start, End  int64
	hasStart    bool
	hasEnd      bool
	Description string
}

// LineError is one problem of an import file, at a line and a column (1-based
// field number; 0 when the whole line is wrong).
type LineError struct {
	Line   int
	Column int
	Name   string // the column's header name, when known
	Msg    string
}

func (e LineError) Error() string {
	switch {
	case e.Column == 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	case e.Name != "":
		return fmt.Sprintf("line %d, column %d (%s): %s", e.Line, e.Column, e.Name, e.Msg)
	default:
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
}

// ValidationError is every problem of a file; nothing is applied when a file has one.
type ValidationError struct {
	File   string
	Errors []LineError // at most MaxReportedErrors
	Total  int         // every error found
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d error(s), nothing applied:", e.File, e.Total)
	for _, le := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(le.Error())
	}
	if e.Total > len(e.Errors) {
		fmt.Fprintf(&b, "\n  ... and %d more", e.Total-len(e.Errors))
	}
	return b.String()
}

// ParseOptions tune ParseCSV.
type ParseOptions struct {
	// Offer, when set, must equal the offer column of every line that has one.
	Offer string
}

// Parsed is a validated import file.
type Parsed struct {
	Rows []Row
	// CodeColumn is the code column's number (1-based).
	CodeColumn int
	// SkippedPromoCodes counts lines of kind PromoCode (from an export): they are
	// objects of their own and are not turned into set entries.
	SkippedPromoCodes int
}

type validator struct {
	errs  []LineError
	total int
}

func (v *validator) add(e LineError) {
	v.total++
	if len(v.errs) < MaxReportedErrors {
		v.errs = append(v.errs, e)
	}
}

// ParseCSV reads and validates a whole import file. It returns every row, or a
// *ValidationError naming each bad line and column (up to MaxReportedErrors).
func ParseCSV(name string, r io.Reader, opt ParseOptions) (*Parsed, error) {
	cr := csv.NewReader(stripBOM(r))
	cr.FieldsPerRecord = -1 // checked here, with the line named
	cr.ReuseRecord = true
	v := &validator{}

	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &ValidationError{File: name, Total: 1, Errors: []LineError{{Line: 1, Msg: "empty file: a header line " +
			"code,affiliate_id[,start_date,end_date,description] is required"}}}
	}
	if err != nil {
		return nil, &ValidationError{File: name, Total: 1, Errors: []LineError{csvError(err)}}
	}
	cols := map[string]int{}
	names := make([]string, len(header))
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		names[i] = h
		switch {
		case !isKnownColumn(h):
			v.add(LineError{Line: 1, Column: i + 1, Msg: fmt.Sprintf("unknown column %q: the header is code,affiliate_id[,start_date,end_date,description]", header[i])})
		case cols[h] != 0:
			v.add(LineError{Line: 1, Column: i + 1, Name: h, Msg: fmt.Sprintf("column %q appears twice (also column %d)", h, cols[h])})
		default:
			cols[h] = i + 1
		}
	}
	for _, req := range []string{colCode, colAffiliateID} {
		if cols[req] == 0 {
			v.add(LineError{Line: 1, Msg: fmt.Sprintf("the header has no %q column: a header line code,affiliate_id[,start_date,end_date,description] is required", req)})
		}
	}
	if v.total > 0 {
		return nil, &ValidationError{File: name, Errors: v.errs, Total: v.total}
	}
	idx := func(c string) int { return cols[c] - 1 } // -1: absent

	out := &Parsed{CodeColumn: cols[colCode]}
	seen := map[string]int32{} // folded code -> index in out.Rows
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A syntax error (a stray quote): the reader cannot resynchronize.
			v.add(csvError(err))
			break
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			v.add(LineError{Line: line, Msg: fmt.Sprintf("%d fields, the header has %d", len(rec), len(header))})
			continue
		}
		field := func(c string) (string, LineError) {
			i := idx(c)
			if i < 0 {
				return "", LineError{}
			}
			l, _ := cr.FieldPos(i)
			return rec[i], LineError{Line: l, Column: i + 1, Name: c}
		}
		if kind, _ := field(colKind); kind == "PromoCode" {
			out.SkippedPromoCodes++
			continue
		}
		row := Row{Line: line}
		ok := true
		bad := func(at LineError, format string, args ...any) {
			at.Msg = fmt.Sprintf(format, args...)
			v.add(at)
			ok = false
		}

		code, at := field(colCode)
		switch {
		case code == "":
			bad(at, "empty code")
		case !routing.ValidCode(code):
			bad(at, "%q is not a code: 1-64 Latin letters and digits (^[A-Za-z0-9]{1,64}$)", truncate(code))
		default:
			row.Code = strings.Clone(code)
			row.Folded = routing.Fold(row.Code)
		}

		aff, at := field(colAffiliateID)
		if n, err := strconv.ParseInt(aff, 10, 64); err != nil || n < 1 {
			bad(at, "%q is not an affiliate id: an integer >= 1", truncate(aff))
		} else {
			row.AffiliateID = n
		}

		var startAt LineError
		if s, at := field(colStartDate); s != "" {
			startAt = at
			if t, msg := parseDate(s); msg != "" {
				bad(at, "%s", msg)
			} else {
				row.Start, row.hasStart = t, true
			}
		}
		if s, at := field(colEndDate); s != "" {
			if t, msg := parseDate(s); msg != "" {
				bad(at, "%s", msg)
			} else {
				row.End, row.hasEnd = t, true
				if row.hasStart && row.End <= row.Start {
					bad(at, "end_date %s must be after start_date %s (column %d)", s, rec[idx(colStartDate)], startAt.Column)
				}
			}
		}

		if d, at := field(colDescription); d != "" {
			switch {
			case !utf8.ValidString(d):
				bad(at, "the description is not valid UTF-8")
			case utf8.RuneCountInString(d) > MaxDescriptionLen:
				bad(at, "the description has %d characters, at most %d are allowed", utf8.RuneCountInString(d), MaxDescriptionLen)
			default:
				row.Description = strings.Clone(d)
			}
		}

		if o, at := field(colOffer); o != "" && opt.Offer != "" && o != opt.Offer {
			bad(at, "the line is of offer %q, the import is for --offer %s", truncate(o), opt.Offer)
		}

		if row.Folded != "" {
			if j, dup := seen[row.Folded]; dup {
				prev := out.Rows[j]
				_, at := field(colCode)
				if prev.AffiliateID != row.AffiliateID && row.AffiliateID != 0 {
					bad(at, "code %s is on line %d with affiliate %d, here with affiliate %d: a code belongs to one affiliate",
						row.Code, prev.Line, prev.AffiliateID, row.AffiliateID)
				} else {
					bad(at, "code %s duplicates %s on line %d (codes compare case-insensitively)", row.Code, prev.Code, prev.Line)
				}
			} else if ok {
				seen[row.Folded] = int32(len(out.Rows))
			}
		}
		if ok {
			out.Rows = append(out.Rows, row)
		}
	}
	if v.total > 0 {
		return nil, &ValidationError{File: name, Errors: v.errs, Total: v.total}
	}
	if len(out.Rows) == 0 {
		return nil, &ValidationError{File: name, Total: 1, Errors: []LineError{{Line: 2, Msg: "no codes: the file has a header and no line"}}}
	}
	return out, nil
}

func isKnownColumn(h string) bool {
	for _, k := range knownColumns {
		if h == k {
			return true
		}
	}
	return false
}

// parseDate accepts RFC 3339 with whole seconds (Kubernetes keeps no fraction).
func parseDate(s string) (int64, string) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Sprintf("%q is not an RFC 3339 date such as 2027-01-01T00:00:00Z", truncate(s))
	}
	if t.Nanosecond() != 0 {
		return 0, fmt.Sprintf("%q has a fraction of a second, which Kubernetes does not keep: use whole seconds", truncate(s))
	}
	return t.Unix(), ""
}

func csvError(err error) LineError {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return LineError{Line: pe.Line, Column: pe.Column, Msg: "CSV syntax: " + pe.Err.Error() + " (column is the character position)"}
	}
	return LineError{Line: 0, Msg: err.Error()}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// stripBOM drops a UTF-8 byte order mark (spreadsheets write one).
func stripBOM(r io.Reader) io.Reader {
	br := &bomReader{r: r}
	return br
}

type bomReader struct {
	r       io.Reader
	checked bool
	buf     []byte
}

func (b *bomReader) Read(p []byte) (int, error) {
	if !b.checked {
		b.checked = true
		head := make([]byte, 3)
		n, err := io.ReadFull(b.r, head)
		head = head[:n]
		if !bytes.Equal(head, []byte("\xef\xbb\xbf")) {
			b.buf = head
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return 0, err
		}
	}
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	return b.r.Read(p)
}
