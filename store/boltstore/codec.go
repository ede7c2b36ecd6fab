package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wshub/wshub/store"
)

// The file layout, all in top-level buckets of one bbolt file:
//
//	meta                    "format" -> formatVersion, "epoch" -> random hex id,
//	                        "applied" -> generation of the last checkpoint (8 bytes)
//	journal                 seqKey(n) -> journal record, the writes since the
//	                        last checkpoint (see overlay.go)
//	hist / <conv>           seqKey(seq) -> message; the bucket's Sequence() is
//	                        the last seq ever assigned in conv
//	pend / <user> / q       seqKey(n) -> message, n in enqueue order
//	pend / <user> / i       message id -> seqKey(n) in q
//	pend / <user>  "n"      number of entries in q, 8 bytes big-endian
//	cids                    cidKey(from, cid) -> created ms (8 bytes) + message
//	                        without its body (the body is in the history)
//	cidlog                  seqKey(n) -> created ms (8 bytes) + cidKey, in
//	                        insertion order, so the oldest records come first
//	rooms / <room>          user -> empty
//	userrooms / <user>      room -> empty
//
// Big-endian integer keys sort in numeric order, so a cursor walks a
// conversation in seq order and a pending queue in enqueue order.
var (
	bucketMeta      = []byte("meta")
	bucketJournal   = []byte("journal")
	bucketHist      = []byte("hist")
	bucketPend      = []byte("pend")
	bucketCIDs      = []byte("cids")
	bucketCIDLog    = []byte("cidlog")
	bucketRooms     = []byte("rooms")
	bucketUserRooms = []byte("userrooms")

	allBuckets = [][]byte{bucketMeta, bucketJournal, bucketHist, bucketPend, bucketCIDs, bucketCIDLog, bucketRooms, bucketUserRooms}

	keyFormat  = []byte("format")
	keyEpoch   = []byte("epoch")
	keyApplied = []byte("applied")

	keyPendQueue = []byte("q")
	keyPendIndex = []byte("i")
	keyPendCount = []byte("n")

	emptyValue = []byte{}
)

// formatVersion is the layout version written into meta/format.
const formatVersion = "wshub-boltstore-2"

// errBadRecord reports a stored value that does not decode.
var errBadRecord = errors.New("undecodable record")

// seqKey encodes n as an 8-byte big-endian key.
func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

// cidKey is the key of the (from, cid) record: from is length-prefixed so
// that no two pairs share a key whatever bytes they hold.
func cidKey(from, cid string) []byte {
	k := make([]byte, 0, binary.MaxVarintLen64+len(from)+len(cid))
	k = binary.AppendUvarint(k, uint64(len(from)))
	k = append(k, from...)
	return append(k, cid...)
}

// Message encoding:
//
//	[0]     record version (1)
//	[1:9]   seq, big-endian (patched in place by the committer)
//	[9]     flags (bit 0: Body is not nil)
//	varint  TS, varint Cmd
//	uvarint-prefixed ID, Conv, From, To
//	rest    Body
const (
	msgVersion   = 1
	msgSeqOffset = 1
	msgFlagBody  = 1
)

// encodeMessage encodes m; its Seq field is written at msgSeqOffset and may
// be replaced later with setEncodedSeq.
func encodeMessage(m *store.Message) []byte {
	n := 10 + 2*binary.MaxVarintLen64 + 4*binary.MaxVarintLen64 +
		len(m.ID) + len(m.Conv) + len(m.From) + len(m.To) + len(m.Body)
	b := make([]byte, 10, n)
	b[0] = msgVersion
	binary.BigEndian.PutUint64(b[msgSeqOffset:], m.Seq)
	if m.Body != nil {
		b[9] = msgFlagBody
	}
	b = binary.AppendVarint(b, m.TS)
	b = binary.AppendVarint(b, int64(m.Cmd))
	for _, s := range [...]string{m.ID, m.Conv, m.From, m.To} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, m.Body...)
}

// setEncodedSeq writes seq into an encoded message.
func setEncodedSeq(b []byte, seq uint64) {
	binary.BigEndian.PutUint64(b[msgSeqOffset:], seq)
}

// decodeMessage decodes an encoded message, copying every byte out of b
// (which may point into the memory map).
func decodeMessage(b []byte) (store.Message, error) {
	var m store.Message
	if len(b) < 10 || b[0] != msgVersion {
		return m, errBadRecord
	}
	m.Seq = binary.BigEndian.Uint64(b[msgSeqOffset:])
	flags := b[9]
	rest := b[10:]
	ts, n := binary.Varint(rest)
	if n <= 0 {
		return m, errBadRecord
	}
	m.TS, rest = ts, rest[n:]
	cmd, n := binary.Varint(rest)
	if n <= 0 {
		return m, errBadRecord
	}
	m.Cmd, rest = int(cmd), rest[n:]
	var fields [4]string
	for i := range fields {
		l, n := binary.Uvarint(rest)
		if n <= 0 || uint64(len(rest)-n) < l {
			return m, errBadRecord
		}
		fields[i] = string(rest[n : n+int(l)])
		rest = rest[n+int(l):]
	}
	m.ID, m.Conv, m.From, m.To = fields[0], fields[1], fields[2], fields[3]
	if flags&msgFlagBody != 0 {
		m.Body = append(make([]byte, 0, len(rest)), rest...)
	}
	return m, nil
}

// decodedID returns the message id of an encoded message without decoding
// the rest. The result aliases b.
func decodedID(b []byte) ([]byte, error) {
	if len(b) < 10 || b[0] != msgVersion {
		return nil, errBadRecord
	}
	rest := b[10:]
	for range 2 { // TS, Cmd
		_, n := binary.Varint(rest)
		if n <= 0 {
			return nil, errBadRecord
		}
		rest = rest[n:]
	}
	l, n := binary.Uvarint(rest)
	if n <= 0 || uint64(len(rest)-n) < l {
		return nil, errBadRecord
	}
	return rest[n : n+int(l)], nil
}

// corruptf wraps ErrCorrupt for a record found damaged while reading.
func corruptf(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}

// Journal records.
const (
	recAppend = 'A' // [8] created ms, cid, n, n users, rest: encoded message
	recAck    = 'K' // user, n, n ids
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return "", nil, false
	}
	return string(b[n : n+int(l)]), b[n+int(l):], true
}

func encodeAppendRec(r appendRec) []byte {
	b := make([]byte, 0, 16+len(r.cid)+len(r.e.enc)+16*len(r.pending))
	b = append(b, recAppend)
	b = binary.BigEndian.AppendUint64(b, uint64(r.e.created))
	b = appendString(b, r.cid)
	b = binary.AppendUvarint(b, uint64(len(r.pending)))
	for _, u := range r.pending {
		b = appendString(b, u)
	}
	return append(b, r.e.enc...)
}

func encodeAckRec(r ackRec) []byte {
	b := []byte{recAck}
	b = appendString(b, r.user)
	b = binary.AppendUvarint(b, uint64(len(r.ids)))
	for _, id := range r.ids {
		b = appendString(b, id)
	}
	return b
}

// decodeRecord decodes a journal record into an appendRec or an ackRec.
func decodeRecord(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, errBadRecord
	}
	switch b[0] {
	case recAppend:
		if len(b) < 9 {
			return nil, errBadRecord
		}
		created := int64(binary.BigEndian.Uint64(b[1:]))
		cid, rest, ok := readString(b[9:])
		if !ok {
			return nil, errBadRecord
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)) {
			return nil, errBadRecord
		}
		rest = rest[k:]
		r := appendRec{cid: cid, pending: make([]string, 0, n)}
		for range n {
			var u string
			if u, rest, ok = readString(rest); !ok {
				return nil, errBadRecord
			}
			r.pending = append(r.pending, u)
		}
		m, err := decodeMessage(rest)
		if err != nil {
			return nil, err
		}
		r.e = &entry{enc: append([]byte(nil), rest...), id: m.ID, conv: m.Conv, seq: m.Seq,
			bodyLen: len(m.Body), created: created}
		return r, nil
	case recAck:
		user, rest, ok := readString(b[1:])
		if !ok {
			return nil, errBadRecord
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)) {
			return nil, errBadRecord
		}
		rest = rest[k:]
		r := ackRec{user: user, ids: make([]string, 0, n)}
		for range n {
			var id string
			if id, rest, ok = readString(rest); !ok {
				return nil, errBadRecord
			}
			r.ids = append(r.ids, id)
		}
		return r, nil
	}
	return nil, errBadRecord
}

// headerOf returns a copy of the encoded message enc without its body
// (whose length is bodyLen), for a cid record.
func headerOf(enc []byte, bodyLen int) []byte {
	h := append([]byte(nil), enc[:len(enc)-bodyLen]...)
	h[9] &^= msgFlagBody
	return h
}
