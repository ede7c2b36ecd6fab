package wsconn

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// maskBytewise is the reference: RFC 6455 section 5.3 as written, one byte
// at a time.
func maskBytewise(key [4]byte, pos int, p []byte) int {
	for i := range p {
		p[i] ^= key[pos&3]
		pos++
	}
	return pos & 3
}

func randKey(r *rand.Rand) [4]byte {
	var k [4]byte
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	return k
}

func randBytes(r *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func TestMaskMatchesBytewise(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := [][4]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {1, 2, 3, 4}}
	for range 20 {
		keys = append(keys, randKey(r))
	}
	for _, key := range keys {
		for n := 0; n <= 100; n++ {
			for pos := range 4 {
				in := randBytes(r, n)
				// Also at an odd offset in a larger buffer, so that the
				// words are not aligned.
				for _, off := range []int{0, 1, 3} {
					buf := make([]byte, off+n+3)
					got := buf[off : off+n]
					copy(got, in)
					want := bytes.Clone(in)
					gotPos := mask(key, pos, got)
					wantPos := maskBytewise(key, pos, want)
					if !bytes.Equal(got, want) || gotPos != wantPos {
						t.Fatalf("key %x pos %d len %d off %d: got %x pos %d, want %x pos %d",
							key, pos, n, off, got, gotPos, want, wantPos)
					}
					if !bytes.Equal(buf[:off], make([]byte, off)) || !bytes.Equal(buf[off+n:], make([]byte, 3)) {
						t.Fatalf("key %x pos %d len %d off %d: wrote outside p: %x", key, pos, n, off, buf)
					}
					mask(key, pos, got)
					if !bytes.Equal(got, in) {
						t.Fatalf("key %x pos %d len %d: masking twice gives %x, not %x", key, pos, n, got, in)
					}
				}
			}
		}
	}
}

// A payload unmasked in pieces, each starting at the key position the last
// one returned, comes out as if unmasked whole.
func TestMaskPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		key := randKey(r)
		in := randBytes(r, r.IntN(300))
		want := bytes.Clone(in)
		maskBytewise(key, 0, want)

		got := bytes.Clone(in)
		var pieces []int
		pos, rest := 0, got
		for len(rest) > 0 {
			n := 1 + r.IntN(min(len(rest), 1+r.IntN(40)))
			if r.IntN(8) == 0 {
				n = 0 // an empty piece keeps the position
			}
			pieces = append(pieces, n)
			pos = mask(key, pos, rest[:n])
			rest = rest[n:]
		}
		if !bytes.Equal(got, want) || pos != len(in)&3 {
			t.Fatalf("key %x, %d bytes in pieces %v: got %x pos %d, want %x pos %d",
				key, len(in), pieces, got, pos, want, len(in)&3)
		}
	}
}

func TestMaskNoAlloc(t *testing.T) {
	p := make([]byte, 1000)
	if n := testing.AllocsPerRun(100, func() { mask([4]byte{1, 2, 3, 4}, 1, p) }); n != 0 {
		t.Errorf("mask allocates %v times per call", n)
	}
}

func BenchmarkMask(b *testing.B) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, n := range []int{16, 128, 1024, 65536} {
		p := make([]byte, n)
		b.Run(fmt.Sprintf("bytewise-%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				maskBytewise(key, 1, p)
			}
		})
		b.Run(fmt.Sprintf("word-%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				mask(key, 1, p)
			}
		})
	}
}
