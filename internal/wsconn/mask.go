package wsconn

import (
	"encoding/binary"
	"math/bits"
)

// mask XORs p with key, starting at position pos of the key (0..3), and
// returns the key position after p, so a payload unmasked in several pieces
// continues correctly (RFC 6455 section 5.3).
//
// It works 8 bytes at a time with the key repeated in a uint64 and rotated
// to pos; 8 being a multiple of 4, the key position after each word is the
// same, and only the tail shorter than a word goes byte by byte.
func mask(key [4]byte, pos int, p []byte) int {
	pos &= 3
	if len(p) >= 8 {
		k := uint64(binary.LittleEndian.Uint32(key[:]))
		// Byte j of the little-endian word must be key[(pos+j)&3].
		k = bits.RotateLeft64(k|k<<32, -8*pos)
		for len(p) >= 32 {
			binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k)
			binary.LittleEndian.PutUint64(p[8:], binary.LittleEndian.Uint64(p[8:])^k)
			binary.LittleEndian.PutUint64(p[16:], binary.LittleEndian.Uint64(p[16:])^k)
			binary.LittleEndian.PutUint64(p[24:], binary.LittleEndian.Uint64(p[24:])^k)
			p = p[32:]
		}
		for len(p) >= 8 {
			binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k)
			p = p[8:]
		}
	}
	for i := range p {
		p[i] ^= key[(pos+i)&3]
	}
	return (pos + len(p)) & 3
}
