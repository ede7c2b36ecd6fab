package client

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A room's Seq moves over contiguous seqs only; a join answer moves it
// past a gap; a gap older than maxAhead seqs is given up.
func TestRoom_SeqMovesOverContiguousSeqs(t *testing.T) {
	r := &room{RoomState: RoomState{Seq: 5}}
	r.observe(7)
	r.observe(8)
	assert.Equal(t, uint64(5), r.Seq, "6 is missing")
	r.observe(4)
	assert.Equal(t, uint64(5), r.Seq, "an old seq changes nothing")
	r.observe(6)
	assert.Equal(t, uint64(8), r.Seq, "the gap filled")
	assert.Nil(t, r.ahead)

	r.observe(10)
	r.observe(12)
	r.moveTo(10) // a join answer: everything up to 10 was replayed
	assert.Equal(t, uint64(10), r.Seq)
	r.observe(11)
	assert.Equal(t, uint64(12), r.Seq)

	for s := uint64(14); s <= 14+maxAhead; s++ {
		r.observe(s)
	}
	assert.Equal(t, uint64(14+maxAhead), r.Seq, "13 given up once maxAhead seqs are past it")
	assert.Nil(t, r.ahead)
}
