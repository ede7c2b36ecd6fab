package wsconn

import (
	"bytes"
	"testing"
)

// nopSink counts what a parser reads.
type nopSink struct{ msgs int }

func (s *nopSink) message([]byte)         { s.msgs++ }
func (s *nopSink) ping([]byte)            {}
func (s *nopSink) closeFrame(int, string) {}

// BenchmarkParse is the read path's own cost per message: a typical chat
// frame whole in one read (unmasked in place, UTF-8 checked, no copy), and
// a 64 KiB message arriving in 4 KiB reads (assembled in pooled chunks).
//
//	go test -run '^$' -bench Parse -benchmem ./internal/wsconn/
func BenchmarkParse(b *testing.B) {
	small := clientFrame(true, opText, []byte(`{"cmd":10,"dstid":"bob","cid":"c-17","content":"hello, this is a typical chat message"}`))
	big := clientFrame(true, opText, bytes.Repeat([]byte("x"), 64<<10))
	for _, bc := range []struct {
		name  string
		frame []byte
		piece int
	}{
		{"small-whole", small, len(small)},
		{"64k-in-4k-reads", big, 4 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := parser{limit: 1 << 20}
			s := &nopSink{}
			buf := make([]byte, len(bc.frame))
			b.SetBytes(int64(len(bc.frame)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, bc.frame) // the parser unmasks in place
				var rest []byte
				for off := 0; off < len(buf); off += bc.piece {
					in := buf[off:min(off+bc.piece, len(buf))]
					if len(rest) > 0 {
						in = append(rest, in...)
					}
					r, f := p.feed(in, s)
					if f != nil {
						b.Fatal(f)
					}
					rest = append(rest[:0], r...)
				}
			}
			if s.msgs == 0 {
				b.Fatal("no message read")
			}
		})
	}
}
