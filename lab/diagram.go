package lab

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/trace"
)

// A sequence diagram of narrated steps, like the chapter's figures: one
// lane (a vertical line) per host in the order they first appear, one
// arrow per message from the sender's lane to the receiver's, numbered as
// the narration numbers them. Connections opening and closing are dashed
// arrows; a cache's decision or a peer's own decision is a note on its
// lane.

// Diagram layout, in SVG user units.
const (
	diagLaneW   = 190 // distance between lanes
	diagMargin  = 70  // left margin (times) and right margin
	diagHeadH   = 50  // the host boxes at the top
	diagRowH    = 30  // one step
	diagLabelN  = 48  // longest label on an arrow, in characters
	diagNoteW   = 220 // a note's box
	diagCharPx  = 6   // an estimate of a character's width at font-size 11
	diagBoxPadX = 8
)

// lanes returns the hosts of steps in order of first appearance.
func lanes(steps []Step) []string {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, s := range steps {
		add(s.From)
		if s.Event.To != "" {
			add(s.To)
		}
	}
	return out
}

// isNote reports whether a step is drawn as a note rather than an arrow.
func isNote(s Step) bool {
	return strings.HasPrefix(s.Event.Type, "cache.") || s.Event.Type == trace.State || s.Event.To == "" || s.From == s.To
}

// noteLane is the lane a note is drawn on: the cache (receiver) for a
// cache's decision, else the deciding peer.
func noteLane(s Step) string {
	if strings.HasPrefix(s.Event.Type, "cache.") && s.To != "" {
		return s.To
	}
	return s.From
}

func stepLabel(s Step, n int) string {
	l := s.Event.Summary
	if s.Event.Type != trace.Msg {
		l = s.Event.Type + " " + l
	}
	if len(l) > n {
		l = l[:n-3] + "..."
	}
	return fmt.Sprintf("%d. %s", s.N, l)
}

// WriteSVG draws steps as an SVG sequence diagram. Times are shown
// relative to the first step unless maskTimes.
func WriteSVG(w io.Writer, title string, steps []Step, maskTimes bool) error {
	ls := lanes(steps)
	x := map[string]int{}
	for i, l := range ls {
		x[l] = diagMargin + diagLaneW/2 + i*diagLaneW
	}
	width := 2*diagMargin + max(1, len(ls))*diagLaneW
	height := diagHeadH + 30 + len(steps)*diagRowH + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>` + "\n")
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	if title != "" {
		fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>`+"\n", diagMargin/2, xmlEscape(title))
	}
	bottom := height - 20
	for _, l := range ls {
		bw := min(diagLaneW-10, len(l)*diagCharPx+2*diagBoxPadX)
		fmt.Fprintf(&b, `<rect x="%d" y="24" width="%d" height="22" rx="3" fill="#eef3fb" stroke="#335"/>`+"\n", x[l]-bw/2, bw)
		fmt.Fprintf(&b, `<text x="%d" y="39" text-anchor="middle">%s</text>`+"\n", x[l], xmlEscape(l))
		fmt.Fprintf(&b, `<line x1="%d" y1="46" x2="%d" y2="%d" stroke="#999" stroke-dasharray="2,3"/>`+"\n", x[l], x[l], bottom)
	}
	var t0 time.Time
	if len(steps) > 0 {
		t0 = steps[0].Event.Time
	}
	for i, s := range steps {
		y := diagHeadH + 30 + i*diagRowH
		at := "+T"
		if !maskTimes {
			at = fmt.Sprintf("+%.1fms", float64(s.Event.Time.Sub(t0).Microseconds())/1000)
		}
		fmt.Fprintf(&b, `<text x="4" y="%d" fill="#666">%s</text>`+"\n", y, at)
		if isNote(s) {
			cx := x[noteLane(s)]
			label := stepLabel(s, diagNoteW/diagCharPx)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="18" fill="#fff8d0" stroke="#aa8"/>`+"\n", cx+6, y-13, diagNoteW)
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", cx+10, y, xmlEscape(label))
			continue
		}
		x1, x2 := x[s.From], x[s.To]
		dash := ""
		if s.Event.Type != trace.Msg {
			dash = ` stroke-dasharray="5,3"`
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"%s marker-end="url(#arrow)"/>`+"\n", x1, y+4, x2, y+4, dash)
		n := max(12, (abs(x2-x1)+diagLaneW/2)/diagCharPx)
		label := stepLabel(s, min(n, diagLabelN*2))
		if s.Event.Bytes > 0 {
			label += fmt.Sprintf(" (%d B)", s.Event.Bytes)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (x1+x2)/2, y, xmlEscape(label))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// WriteMermaid writes steps as a Mermaid sequenceDiagram.
func WriteMermaid(w io.Writer, title string, steps []Step) error {
	ls := lanes(steps)
	id := map[string]string{}
	var b strings.Builder
	b.WriteString("sequenceDiagram\n")
	if title != "" {
		fmt.Fprintf(&b, "    title %s\n", mermaidText(title))
	}
	for i, l := range ls {
		id[l] = fmt.Sprintf("H%d", i+1)
		fmt.Fprintf(&b, "    participant %s as %s\n", id[l], mermaidText(l))
	}
	for _, s := range steps {
		label := mermaidText(stepLabel(s, 2*diagLabelN))
		if s.Event.Bytes > 0 {
			label += fmt.Sprintf(" (%d B)", s.Event.Bytes)
		}
		switch {
		case isNote(s):
			fmt.Fprintf(&b, "    Note right of %s: %s\n", id[noteLane(s)], label)
		case s.Event.Type != trace.Msg:
			fmt.Fprintf(&b, "    %s-->>%s: %s\n", id[s.From], id[s.To], label)
		default:
			fmt.Fprintf(&b, "    %s->>%s: %s\n", id[s.From], id[s.To], label)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText keeps a label inside Mermaid's grammar (";" and "#" start
// entities and statements; "<" and ">" are HTML).
func mermaidText(s string) string {
	return strings.NewReplacer(";", ",", "#", "", "<", "&lt;", ">", "&gt;", "\n", " ").Replace(s)
}
