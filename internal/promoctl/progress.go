package promoctl

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// progress draws a one-line bar on a terminal; with a nil writer it draws nothing.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	total int
	n     int
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	p.draw()
	return p
}

func (p *progress) step() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.draw()
}

func (p *progress) draw() {
	if p.w == nil || p.total == 0 {
		return
	}
	const width = 30
	filled := p.n * width / p.total
	fmt.Fprintf(p.w, "\rapplying sets [%s%s] %d/%d", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.n, p.total)
}

func (p *progress) done() {
	if p.w != nil && p.total > 0 {
		fmt.Fprintln(p.w)
	}
}
