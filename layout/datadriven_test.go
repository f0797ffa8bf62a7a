package layout

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The files under testdata/ hold layout math cases, one per block:
//
//	command key=value ...
//	input line
//	----
//	expected output line
//	<blank line>
//
// Lines starting with '#' outside a block are comments. Sizes read and print
// with ParseSize's suffixes (64K, 3M) where exact, "eof" for EOF. Commands:
//
//	layout            input "comp end=E size=S osts=a,b,c"; sets the layout
//	                  (inode 1, sequence numbers from 0) and prints it
//	map off= len=     the extents of Map
//	fileoffset comp= stripe= obj=
//	filesize          input "comp stripe size" per nonempty object
//	truncate size=    the TruncatePoints, then FileSize of them
//
// Run with -rewrite to regenerate the expected outputs after checking a
// change by hand.
var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs in testdata/")

type ddCase struct {
	line   int
	cmd    string
	args   map[string]string
	input  []string
	output []string
}

func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) { runDataFile(t, path) })
	}
}

func runDataFile(t *testing.T, path string) {
	cases, comments := parseDataFile(t, path)
	var lay Layout
	var out strings.Builder
	for i, c := range cases {
		got := runDataCase(t, path, c, &lay)
		if *rewrite {
			out.WriteString(comments[i])
			writeDataCase(&out, c, got)
			continue
		}
		if want := strings.Join(c.output, "\n"); got != want {
			t.Errorf("%s:%d: %s %v\ngot:\n%s\nwant:\n%s", path, c.line, c.cmd, c.args, got, want)
		}
	}
	if *rewrite {
		out.WriteString(comments[len(cases)])
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// parseDataFile returns the cases and the comment text before each case
// (and after the last), so -rewrite keeps the comments.
func parseDataFile(t *testing.T, path string) ([]ddCase, []string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []ddCase
	var comments []string
	var pending strings.Builder
	var cur *ddCase
	inOutput := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && (line == "" || strings.HasPrefix(line, "#")):
			pending.WriteString(line + "\n")
		case cur == nil:
			fields := strings.Fields(line)
			cur = &ddCase{line: n, cmd: fields[0], args: map[string]string{}}
			for _, kv := range fields[1:] {
				k, v, _ := strings.Cut(kv, "=")
				cur.args[k] = v
			}
		case line == "----" && !inOutput:
			inOutput = true
		case line == "" && inOutput:
			cases, comments = append(cases, *cur), append(comments, pending.String())
			pending.Reset()
			cur, inOutput = nil, false
			pending.WriteString("\n")
		case inOutput:
			cur.output = append(cur.output, line)
		default:
			cur.input = append(cur.input, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		if !inOutput {
			t.Fatalf("%s:%d: case without ----", path, cur.line)
		}
		cases, comments = append(cases, *cur), append(comments, pending.String())
		pending.Reset()
	}
	return cases, append(comments, pending.String())
}

func writeDataCase(b *strings.Builder, c ddCase, got string) {
	b.WriteString(c.cmd)
	for _, k := range []string{"comp", "stripe", "off", "len", "obj", "size"} {
		if v, ok := c.args[k]; ok {
			fmt.Fprintf(b, " %s=%s", k, v)
		}
	}
	b.WriteString("\n")
	for _, in := range c.input {
		b.WriteString(in + "\n")
	}
	b.WriteString("----\n")
	if got != "" {
		b.WriteString(got + "\n")
	}
}

func runDataCase(t *testing.T, path string, c ddCase, lay *Layout) string {
	fail := func(format string, args ...any) string {
		t.Fatalf("%s:%d: "+format, append([]any{path, c.line}, args...)...)
		return ""
	}
	size := func(key string) int64 {
		v, ok := c.args[key]
		if !ok {
			fail("missing %s=", key)
		}
		n, err := parseTestSize(v)
		if err != nil {
			fail("%v", err)
		}
		return n
	}
	var lines []string
	switch c.cmd {
	case "layout":
		l, err := parseTestLayout(c.input)
		if err != nil {
			fail("%v", err)
		}
		if err := l.Validate(); err != nil {
			fail("invalid layout: %v", err)
		}
		*lay = l
		for i, comp := range l.Components {
			osts := make([]string, len(comp.Objects))
			for s, o := range comp.Objects {
				osts[s] = strconv.Itoa(int(o.OST))
			}
			lines = append(lines, fmt.Sprintf("comp %d [%s, %s) size=%s count=%d osts=%s",
				i, fmtSize(comp.Start), fmtSize(comp.End), fmtSize(comp.StripeSize),
				comp.StripeCount, strings.Join(osts, ",")))
		}
	case "map":
		for _, e := range lay.Map(size("off"), size("len"), nil) {
			lines = append(lines, fmt.Sprintf("c%d s%d ost=%d obj=%s file=%s len=%s",
				e.Comp, e.Stripe, e.Object.OST, fmtSize(e.ObjOffset), fmtSize(e.FileOffset), fmtSize(e.Length)))
		}
	case "fileoffset":
		comp := int(size("comp"))
		if comp >= len(lay.Components) {
			fail("no component %d", comp)
		}
		lines = append(lines, fmtSize(lay.Components[comp].FileOffset(int(size("stripe")), size("obj"))))
	case "filesize":
		sizes := map[[2]int]int64{}
		for _, in := range c.input {
			f := strings.Fields(in)
			if len(f) != 3 {
				fail("filesize input %q: want comp stripe size", in)
			}
			comp, err1 := strconv.Atoi(f[0])
			stripe, err2 := strconv.Atoi(f[1])
			n, err3 := parseTestSize(f[2])
			if err1 != nil || err2 != nil || err3 != nil {
				fail("filesize input %q", in)
			}
			sizes[[2]int{comp, stripe}] = n
		}
		lines = append(lines, fmtSize(lay.FileSize(func(comp, stripe int) int64 { return sizes[[2]int{comp, stripe}] })))
	case "truncate":
		pts := lay.TruncatePoints(size("size"), nil)
		for _, p := range pts {
			lines = append(lines, fmt.Sprintf("c%d s%d ost=%d size=%s", p.Comp, p.Stripe, p.Object.OST, fmtSize(p.Size)))
		}
		lines = append(lines, "filesize="+fmtSize(lay.FileSize(truncSizes(pts))))
	default:
		fail("unknown command %q", c.cmd)
	}
	return strings.Join(lines, "\n")
}

// truncSizes turns truncate points into an objSize function for FileSize.
func truncSizes(pts []ObjTrunc) func(comp, stripe int) int64 {
	return func(comp, stripe int) int64 {
		for _, p := range pts {
			if p.Comp == comp && p.Stripe == stripe {
				return p.Size
			}
		}
		return 0
	}
}

// parseTestLayout builds a layout from "comp end=E size=S osts=a,b" lines,
// as Instantiate would: contiguous components, inode 1, sequence numbers
// from 0.
func parseTestLayout(lines []string) (Layout, error) {
	var l Layout
	var start int64
	var seq uint32
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "comp" {
			return Layout{}, fmt.Errorf("layout input %q", line)
		}
		c := Component{Start: start, Pattern: PatternRAID0}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "end":
				c.End, err = parseTestSize(v)
			case "size":
				c.StripeSize, err = parseTestSize(v)
			case "osts":
				for _, o := range strings.Split(v, ",") {
					n, err := strconv.ParseUint(o, 10, 32)
					if err != nil {
						return Layout{}, err
					}
					c.Objects = append(c.Objects, Object{OST: uint32(n), ID: ObjectID{Ino: 1, Seq: seq}})
					seq++
				}
			default:
				err = fmt.Errorf("unknown key %q", k)
			}
			if err != nil {
				return Layout{}, fmt.Errorf("layout input %q: %w", line, err)
			}
		}
		c.StripeCount = uint32(len(c.Objects))
		l.Components = append(l.Components, c)
		start = c.End
	}
	return l, nil
}

func parseTestSize(s string) (int64, error) {
	switch s {
	case "eof":
		return EOF, nil
	case "-1":
		return -1, nil
	}
	return ParseSize(s)
}

// fmtSize prints a size the way parseTestSize reads it, with the largest
// exact binary suffix.
func fmtSize(n int64) string {
	switch {
	case n == EOF:
		return "eof"
	case n <= 0:
		return strconv.FormatInt(n, 10)
	case n%(1<<40) == 0:
		return fmt.Sprintf("%dT", n>>40)
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return strconv.FormatInt(n, 10)
}
