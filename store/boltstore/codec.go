package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wshub/wshub/store"
)

// The file layout, all in top-level buckets of one bbolt file:
//
//	meta                "format" -> formatVersion, "epoch" -> random hex id,
//	                    "gen" -> number of the last checkpoint,
//	                    "applied" -> last log position it covered
//	log                 seqKey(pos) -> append record: every stored message
//	                    (with its pending users and cid), in commit order.
//	                    The bucket's Sequence() numbers log and ack records
//	                    alike. A message stays until its history trims it
//	                    and no pending queue holds it.
//	acks                seqKey(pos) -> ack record, since the last checkpoint
//	hist / <conv>       seqKey(seq) -> seqKey(pos) of the message in log;
//	                    the bucket's Sequence() is the last seq assigned
//	pend / <user>       seqKey(pos) -> sender: the user's queue, in enqueue
//	                    (= log) order
//	pendn               user -> number of entries in pend / <user>
//	pendc               pairKey(user, sender) -> number of entries in
//	                    pend / <user> from sender (no zeros)
//	pendid              pairKey(user, message id) -> seqKey(pos): the
//	                    entries of pend / <user> by message id
//	kept                seqKey(pos) -> empty: log records that left their
//	                    history but are still in a pending queue
//	rooms / <room>      user -> empty
//	userrooms / <user>  room -> empty
//	inbox / <user>      the user's direct conversations (store.Inbox):
//	                    'o' recencyKey(ts, seq) conv -> peer, in recency
//	                    order; 'c' conv -> recencyKey(ts, seq), one of
//	                    each per conversation
//	marks               pairKey(user, conv) -> seqKey(read marker), no zeros
//
// The log is written by every commit; the other buckets except rooms and
// userrooms (the index, inbox and marks included) are written by checkpoints (see overlay.go), which
// keep pend, pendn, pendc and pendid consistent (check.go verifies it). A
// message is written once, in the log; the index refers to it. The
// (sender, cid) records are the cids of the log records (see cids.go).
//
// Big-endian integer keys sort in numeric order, so a cursor walks the log
// in commit order, a conversation in seq order and a pending queue in
// enqueue order.
var (
	bucketMeta      = []byte("meta")
	bucketLog       = []byte("log")
	bucketAcks      = []byte("acks")
	bucketHist      = []byte("hist")
	bucketPend      = []byte("pend")
	bucketPendN     = []byte("pendn")
	bucketPendC     = []byte("pendc")
	bucketPendID    = []byte("pendid")
	bucketKept      = []byte("kept")
	bucketRooms     = []byte("rooms")
	bucketUserRooms = []byte("userrooms")
	bucketInbox     = []byte("inbox")
	bucketMarks     = []byte("marks")

	allBuckets = [][]byte{bucketMeta, bucketLog, bucketAcks, bucketHist, bucketPend, bucketPendN,
		bucketPendC, bucketPendID, bucketKept, bucketRooms, bucketUserRooms, bucketInbox, bucketMarks}

	keyFormat  = []byte("format")
	keyEpoch   = []byte("epoch")
	keyGen     = []byte("gen")
	keyApplied = []byte("applied")

	emptyValue = []byte{}
)

// formatVersion is the layout version written into meta/format. Open
// upgrades a file of formatVersion4 (see migrate4).
const (
	formatVersion  = "wshub-boltstore-6"
	formatVersion5 = "wshub-boltstore-5"
	formatVersion4 = "wshub-boltstore-4"
)

// errBadRecord reports a stored value that does not decode.
var errBadRecord = errors.New("undecodable record")

// seqKey encodes n as an 8-byte big-endian key.
func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

// cidKey is the key of the (from, cid) record.
func cidKey(from, cid string) []byte { return pairKey(from, cid) }

// pairKeyLen returns len(pairKey(a, b)).
func pairKeyLen(a, b string) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], uint64(len(a))) + len(a) + len(b)
}

// pairKey is the key of the pair (a, b): a is length-prefixed so that no
// two pairs share a key whatever bytes they hold.
func pairKey(a, b string) []byte {
	return appendPair(make([]byte, 0, binary.MaxVarintLen64+len(a)+len(b)), a, b)
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

// appendMessage appends the encoding of m to b. Its Seq is written at
// msgSeqOffset from the start and may be replaced with setEncodedSeq.
func appendMessage(b []byte, m *store.Message) []byte {
	b = append(b, msgVersion)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	var flags byte
	if m.Body != nil {
		flags = msgFlagBody
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, m.TS)
	b = binary.AppendVarint(b, int64(m.Cmd))
	for _, s := range [...]string{m.ID, m.Conv, m.From, m.To} {
		b = appendString(b, s)
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

// corruptf wraps ErrCorrupt for a record found damaged while reading.
func corruptf(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}

// Log and ack records.
const (
	recAppend = 'A' // [8] created ms, cid, n, n users, rest: encoded message
	recAck    = 'K' // user, n, n ids
	recRead   = 'R' // user, conv, [8] marker
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

// encodeAppendRec encodes the log record of m, stored with cid and pending,
// and returns it with the offset of the encoded message in it. The commit
// time (at offset 1) and the seq are written later, in place, by
// setRecordCreated and setEncodedSeq.
func encodeAppendRec(m *store.Message, cid string, pending []string) (rec []byte, encOff int) {
	n := 10 + 2*binary.MaxVarintLen64 + 4*binary.MaxVarintLen64 +
		len(m.ID) + len(m.Conv) + len(m.From) + len(m.To) + len(m.Body)
	n += 9 + binary.MaxVarintLen64*(2+len(pending)) + len(cid)
	for _, u := range pending {
		n += len(u)
	}
	b := make([]byte, 9, n)
	b[0] = recAppend
	b = appendString(b, cid)
	b = binary.AppendUvarint(b, uint64(len(pending)))
	for _, u := range pending {
		b = appendString(b, u)
	}
	encOff = len(b)
	return appendMessage(b, m), encOff
}

// setRecordCreated writes the commit time into an append record.
func setRecordCreated(rec []byte, ms int64) {
	binary.BigEndian.PutUint64(rec[1:], uint64(ms))
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

// decodeRecord decodes a log or ack record into an appendRec or an ackRec.
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
		r := appendRec{cid: cid}
		if r.pending, rest, ok = readStrings(rest); !ok {
			return nil, errBadRecord
		}
		m, err := decodeMessage(rest)
		if err != nil {
			return nil, err
		}
		r.e = &entry{enc: append([]byte(nil), rest...), id: m.ID, conv: m.Conv, from: m.From, seq: m.Seq,
			bodyLen: len(m.Body), created: created, to: m.To, ts: m.TS, direct: store.IsDirect(&m)}
		return r, nil
	case recRead:
		user, rest, ok := readString(b[1:])
		if !ok {
			return nil, errBadRecord
		}
		conv, rest, ok := readString(rest)
		if !ok || len(rest) != 8 {
			return nil, errBadRecord
		}
		return readRec{user: user, conv: conv, seq: binary.BigEndian.Uint64(rest)}, nil
	case recAck:
		user, rest, ok := readString(b[1:])
		if !ok {
			return nil, errBadRecord
		}
		r := ackRec{user: user}
		if r.ids, _, ok = readStrings(rest); !ok {
			return nil, errBadRecord
		}
		return r, nil
	}
	return nil, errBadRecord
}

// readStrings reads a count (uvarint) of strings written by readString's
// counterpart, and returns them and the rest of b.
func readStrings(b []byte) ([]string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, nil, false
	}
	b = b[k:]
	out := make([]string, 0, n)
	for range n {
		s, rest, ok := readString(b)
		if !ok {
			return nil, nil, false
		}
		out, b = append(out, s), rest
	}
	return out, b, true
}

// recordMessage returns the encoded message of an append record.
func recordMessage(rec []byte) ([]byte, error) {
	if len(rec) < 9 || rec[0] != recAppend {
		return nil, errBadRecord
	}
	_, rest, ok := readString(rec[9:]) // cid
	if !ok {
		return nil, errBadRecord
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)) {
		return nil, errBadRecord
	}
	rest = rest[k:]
	for range n {
		if _, rest, ok = readString(rest); !ok {
			return nil, errBadRecord
		}
	}
	return rest, nil
}

// recordPending returns the pending users of an append record.
func recordPending(rec []byte) ([]string, error) {
	if len(rec) < 9 || rec[0] != recAppend {
		return nil, errBadRecord
	}
	_, rest, ok := readString(rec[9:]) // cid
	if !ok {
		return nil, errBadRecord
	}
	users, _, ok := readStrings(rest)
	if !ok {
		return nil, errBadRecord
	}
	return users, nil
}

// logMessage decodes the message of an append record.
func logMessage(rec []byte) (store.Message, error) {
	enc, err := recordMessage(rec)
	if err != nil {
		return store.Message{}, err
	}
	return decodeMessage(enc)
}

// logMessageIDFrom returns the message id and sender of an append record,
// without decoding the rest.
func logMessageIDFrom(rec []byte) (id, from string, err error) {
	enc, err := recordMessage(rec)
	if err != nil {
		return "", "", err
	}
	if len(enc) < 10 || enc[0] != msgVersion {
		return "", "", errBadRecord
	}
	rest := enc[10:]
	for range 2 { // TS, Cmd
		_, n := binary.Varint(rest)
		if n <= 0 {
			return "", "", errBadRecord
		}
		rest = rest[n:]
	}
	var fields [3]string // ID, Conv, From
	for i := range fields {
		var ok bool
		if fields[i], rest, ok = readString(rest); !ok {
			return "", "", errBadRecord
		}
	}
	return fields[0], fields[2], nil
}

// encodeReadRec encodes a MarkRead that moved a marker, for the acks
// bucket.
func encodeReadRec(r readRec) []byte {
	b := []byte{recRead}
	b = appendString(b, r.user)
	b = appendString(b, r.conv)
	return binary.BigEndian.AppendUint64(b, r.seq)
}

// recencyKey encodes (ts, seq) so that keys sort by ts, then seq; a
// negative ts sorts before every positive one.
func recencyKey(b []byte, ts int64, seq uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(ts)^(1<<63))
	return binary.BigEndian.AppendUint64(b, seq)
}

// parseRecency decodes a recencyKey.
func parseRecency(b []byte) (ts int64, seq uint64, ok bool) {
	if len(b) < 16 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), binary.BigEndian.Uint64(b[8:]), true
}

// inboxOrderKey is the 'o' key of conv in inbox / <user>.
func inboxOrderKey(ts int64, seq uint64, conv string) []byte {
	return append(recencyKey(append(make([]byte, 0, 17+len(conv)), 'o'), ts, seq), conv...)
}

// inboxConvKey is the 'c' key of conv in inbox / <user>.
func inboxConvKey(conv string) []byte { return append([]byte{'c'}, conv...) }
