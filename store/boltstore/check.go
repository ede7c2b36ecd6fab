package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"

	bolt "go.etcd.io/bbolt"
)

// bbolt's file format (version 2), as far as checkFile reads it. Integers
// are in the machine's byte order.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	metaSize         = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	metaChecksumAt   = 56
	freelistPageFlag = 0x10
	noFreelist       = ^uint64(0)
)

// boltMeta is the part of a bbolt meta page checkFile uses.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// parseMeta decodes the meta page at the start of page. It reports whether
// the magic number is there, and an error if the meta is not valid.
func parseMeta(page []byte) (m boltMeta, magic bool, err error) {
	if len(page) < pageHeaderSize+metaSize {
		return m, false, errors.New("short page")
	}
	b := page[pageHeaderSize : pageHeaderSize+metaSize]
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != boltMagic {
		return m, false, errors.New("no magic number")
	}
	if v := ne.Uint32(b[4:]); v != boltVersion {
		return m, true, fmt.Errorf("format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:metaChecksumAt])
	if h.Sum64() != ne.Uint64(b[metaChecksumAt:]) {
		return m, true, errors.New("meta page checksum mismatch")
	}
	m = boltMeta{
		pageSize: ne.Uint32(b[8:]),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		pgid:     ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return m, true, fmt.Errorf("page size %d", m.pageSize)
	}
	return m, true, nil
}

// checkFile reads the parts of an existing file that bbolt reads while
// opening it (the two meta pages and the freelist page) and reports a file
// that is not a bbolt database (ErrNotBolt) or a damaged one (ErrCorrupt),
// so that bbolt never maps and writes such a file. An absent or empty file
// passes: Open creates the store in it.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wshub/boltstore: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("wshub/boltstore: stat %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory", ErrNotBolt, path)
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	readAt := func(off int64, n int) []byte {
		b := make([]byte, n)
		k, _ := f.ReadAt(b, off)
		return b[:k]
	}

	// Meta page 0 gives the page size; if it is damaged, bbolt falls back
	// to page 1, which sits at offset pageSize.
	meta0, magic0, err0 := parseMeta(readAt(0, pageHeaderSize+metaSize))
	var offsets []int64
	if err0 == nil {
		offsets = []int64{int64(meta0.pageSize)}
	} else {
		offsets = []int64{int64(os.Getpagesize()), 4096, 8192, 16384, 32768, 65536}
	}
	var (
		meta1  boltMeta
		magic1 bool
		err1   = errors.New("not found")
	)
	for _, off := range offsets {
		m, magic, err := parseMeta(readAt(off, pageHeaderSize+metaSize))
		if magic {
			meta1, magic1, err1 = m, true, err
			if err == nil && (err0 != nil || m.pageSize == meta0.pageSize) {
				break
			}
		}
	}
	if !magic0 && !magic1 {
		return fmt.Errorf("%w: %s", ErrNotBolt, path)
	}
	var m boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return fmt.Errorf("%w: %s: meta page 0: %v; meta page 1: %v", ErrCorrupt, path, err0, err1)
	case err0 != nil:
		m = meta1
	case err1 != nil:
		m = meta0
	case meta1.txid > meta0.txid:
		m = meta1
	default:
		m = meta0
	}
	ps := uint64(m.pageSize)
	if m.pgid < 2 || m.pgid > uint64(size)/ps {
		return fmt.Errorf("%w: %s: file is %d bytes, its data reaches %d (truncated)", ErrCorrupt, path, size, m.pgid*ps)
	}
	if m.root < 2 || m.root >= m.pgid {
		return fmt.Errorf("%w: %s: root page %d out of range", ErrCorrupt, path, m.root)
	}
	if m.freelist == noFreelist {
		// bbolt rebuilds the freelist by walking every page from the
		// root, on a goroutine of its own, where a damaged page panics
		// the process: walk them here first.
		return walkPages(f, m, path)
	}
	if m.freelist < 2 || m.freelist >= m.pgid {
		return fmt.Errorf("%w: %s: freelist page %d out of range", ErrCorrupt, path, m.freelist)
	}
	hdr := readAt(int64(m.freelist*ps), pageHeaderSize+8)
	if len(hdr) < pageHeaderSize+8 {
		return fmt.Errorf("%w: %s: freelist page %d unreadable", ErrCorrupt, path, m.freelist)
	}
	ne := binary.NativeEndian
	flags, count, overflow := ne.Uint16(hdr[8:]), uint64(ne.Uint16(hdr[10:])), uint64(ne.Uint32(hdr[12:]))
	if flags != freelistPageFlag {
		return fmt.Errorf("%w: %s: page %d is not a freelist page (flags %#x)", ErrCorrupt, path, m.freelist, flags)
	}
	if m.freelist+overflow >= m.pgid {
		return fmt.Errorf("%w: %s: freelist page %d overflows the data", ErrCorrupt, path, m.freelist)
	}
	if count == 0xFFFF {
		count = ne.Uint64(hdr[pageHeaderSize:]) + 1
	}
	if count > ((overflow+1)*ps-pageHeaderSize)/8 {
		return fmt.Errorf("%w: %s: freelist page %d holds more ids than fit", ErrCorrupt, path, m.freelist)
	}
	return nil
}

// Page flags and leaf element flags of bbolt's format.
const (
	branchPageFlag = 0x01
	leafPageFlag   = 0x02
	bucketLeafFlag = 0x01
	branchElemSize = 16 // pos u32, ksize u32, pgid u64
	leafElemSize   = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHdrSize  = 16 // root u64, sequence u64
)

// walkPages reads every page reachable from m's root, as bbolt does when
// it rebuilds the freelist of a file that has none (Options.NoFreelistSync
// in openBolt), and reports the first page that is not what its parent
// says (its id, its kind, its elements out of bounds, a page past the
// data or reached twice) as ErrCorrupt.
func walkPages(f *os.File, m boltMeta, path string) error {
	ps := int64(m.pageSize)
	seen := make(map[uint64]bool)
	var walk func(id uint64, depth int) error
	// page reads page id with its overflow pages.
	page := func(id uint64) ([]byte, error) {
		if id < 2 || id >= m.pgid {
			return nil, fmt.Errorf("page %d out of range", id)
		}
		if seen[id] {
			return nil, fmt.Errorf("page %d reached twice", id)
		}
		seen[id] = true
		p := make([]byte, ps)
		if _, err := f.ReadAt(p, int64(id)*ps); err != nil {
			return nil, fmt.Errorf("page %d: %v", id, err)
		}
		ne := binary.NativeEndian
		if got := ne.Uint64(p[0:]); got != id {
			return nil, fmt.Errorf("page %d identifies as %d", id, got)
		}
		overflow := uint64(ne.Uint32(p[12:]))
		if overflow == 0 {
			return p, nil
		}
		if id+overflow >= m.pgid {
			return nil, fmt.Errorf("page %d overflows the data", id)
		}
		p = append(p, make([]byte, int64(overflow)*ps)...)
		if _, err := f.ReadAt(p[ps:], int64(id+1)*ps); err != nil {
			return nil, fmt.Errorf("page %d: %v", id, err)
		}
		for i := uint64(1); i <= overflow; i++ {
			seen[id+i] = true
		}
		return p, nil
	}
	// node checks the page p (a branch or a leaf) and walks its children
	// and the buckets it holds.
	var node func(p []byte, depth int) error
	node = func(p []byte, depth int) error {
		if depth > 64 {
			return errors.New("page tree too deep")
		}
		ne := binary.NativeEndian
		flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
		switch flags {
		case branchPageFlag:
			if pageHeaderSize+count*branchElemSize > len(p) {
				return fmt.Errorf("page %d: %d elements do not fit", ne.Uint64(p), count)
			}
			children := make([]uint64, count)
			for i := range count {
				children[i] = ne.Uint64(p[pageHeaderSize+i*branchElemSize+8:])
			}
			for _, c := range children {
				if err := walk(c, depth+1); err != nil {
					return err
				}
			}
		case leafPageFlag:
			if pageHeaderSize+count*leafElemSize > len(p) {
				return fmt.Errorf("page %d: %d elements do not fit", ne.Uint64(p), count)
			}
			var buckets [][]byte
			for i := range count {
				at := pageHeaderSize + i*leafElemSize
				eflags, pos := ne.Uint32(p[at:]), int(ne.Uint32(p[at+4:]))
				ksize, vsize := int(ne.Uint32(p[at+8:])), int(ne.Uint32(p[at+12:]))
				start := at + pos + ksize
				if pos < 0 || ksize < 0 || vsize < 0 || start+vsize > len(p) || at+pos > len(p) {
					return fmt.Errorf("page %d: element %d out of the page", ne.Uint64(p), i)
				}
				if eflags&bucketLeafFlag != 0 {
					buckets = append(buckets, p[start:start+vsize])
				}
			}
			for _, v := range buckets {
				if err := bucket(v, depth+1, walk, node); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("page %d: flags %#x where a branch or leaf belongs", ne.Uint64(p), flags)
		}
		return nil
	}
	walk = func(id uint64, depth int) error {
		p, err := page(id)
		if err != nil {
			return err
		}
		return node(p, depth)
	}
	if err := walk(m.root, 0); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return nil
}

// bucket walks a bucket value of a leaf: its root page, or the inline
// page that follows its header.
func bucket(v []byte, depth int, walk func(uint64, int) error, node func([]byte, int) error) error {
	if len(v) < bucketHdrSize {
		return errors.New("bucket value too short")
	}
	root := binary.NativeEndian.Uint64(v)
	if root != 0 {
		return walk(root, depth)
	}
	inline := v[bucketHdrSize:]
	if len(inline) < pageHeaderSize {
		return errors.New("inline bucket too short")
	}
	return node(inline, depth)
}

// checkQueues verifies that the index's pending queues and their counts
// agree, as checkpoints keep them (tx holds a checkpointed state; records
// since are in the log only): for every user, pendn holds the number of
// entries of pend / <user>, pendc the number per sender, and pendid each
// entry by message id; every entry's log record exists and carries that
// id and sender; every kept record is still held by a queue; the
// histories agree with the log (checkHistory); and the conversation index
// and read markers agree (checkInbox). It returns a
// description of the first disagreement found.
func checkQueues(tx *bolt.Tx) error {
	log, pend, pendN := tx.Bucket(bucketLog), tx.Bucket(bucketPend), tx.Bucket(bucketPendN)
	pendC, pendID, kept := tx.Bucket(bucketPendC), tx.Bucket(bucketPendID), tx.Bucket(bucketKept)
	senders := make(map[string]uint64) // string(pairKey(user, sender)) -> entries
	entries := 0
	err := pend.ForEachBucket(func(user []byte) error {
		q := pend.Bucket(user)
		var n uint64
		err := q.ForEach(func(k, from []byte) error {
			n++
			rec := log.Get(k)
			if rec == nil {
				return fmt.Errorf("queue %q: entry %d has no log record", user, seqOf(k))
			}
			id, recFrom, err := logMessageIDFrom(rec)
			if err != nil {
				return fmt.Errorf("queue %q: log record %d: %v", user, seqOf(k), err)
			}
			if recFrom != string(from) {
				return fmt.Errorf("queue %q: entry %d names sender %q, its record %q", user, seqOf(k), from, recFrom)
			}
			if pos := pendID.Get(pairKey(string(user), id)); !bytes.Equal(pos, k) {
				return fmt.Errorf("queue %q: message %q at %d, pendid says %d", user, id, seqOf(k), seqOf(pos))
			}
			senders[string(pairKey(string(user), string(from)))]++
			return nil
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("queue %q is empty but kept", user)
		}
		if c := seqOf(pendN.Get(user)); c != n {
			return fmt.Errorf("queue %q holds %d messages, pendn says %d", user, n, c)
		}
		entries += int(n)
		return nil
	})
	if err != nil {
		return err
	}
	err = pendN.ForEach(func(user, _ []byte) error {
		if pend.Bucket(user) == nil {
			return fmt.Errorf("pendn counts queue %q, which does not exist", user)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = pendC.ForEach(func(pair, v []byte) error {
		if want, got := senders[string(pair)], seqOf(v); want != got {
			user, from := splitPair(pair)
			return fmt.Errorf("queue %q holds %d messages from %q, pendc says %d", user, want, from, got)
		}
		delete(senders, string(pair))
		return nil
	})
	if err != nil {
		return err
	}
	for pair, n := range senders {
		user, from := splitPair([]byte(pair))
		return fmt.Errorf("queue %q holds %d messages from %q, pendc has none", user, n, from)
	}
	if n := pendID.Stats().KeyN; n != entries {
		return fmt.Errorf("pendid has %d entries, the queues %d", n, entries)
	}
	err = kept.ForEach(func(k, _ []byte) error {
		rec := log.Get(k)
		if rec == nil {
			return fmt.Errorf("kept record %d is not in the log", seqOf(k))
		}
		users, err := recordPending(rec)
		if err != nil {
			return fmt.Errorf("kept record %d: %v", seqOf(k), err)
		}
		for _, u := range users {
			if q := pend.Bucket([]byte(u)); q != nil && q.Get(k) != nil {
				return nil
			}
		}
		return fmt.Errorf("kept record %d is in no queue", seqOf(k))
	})
	if err != nil {
		return err
	}
	if err := checkHistory(tx); err != nil {
		return err
	}
	return checkInbox(tx)
}

// checkHistory verifies the histories against the log: each history holds
// contiguous seqs ending at its Sequence (or none, once every message
// expired), each entry's log record exists and carries that conversation
// and seq, and every checkpointed log record (up to meta/applied) is in
// its history or kept for a queue: none is left behind by the trimming.
func checkHistory(tx *bolt.Tx) error {
	log, hist, kept := tx.Bucket(bucketLog), tx.Bucket(bucketHist), tx.Bucket(bucketKept)
	err := hist.ForEachBucket(func(conv []byte) error {
		hb := hist.Bucket(conv)
		var prev uint64
		err := hb.ForEach(func(k, pos []byte) error {
			seq := seqOf(k)
			if prev > 0 && seq != prev+1 {
				return fmt.Errorf("history %q: seq %d follows %d", conv, seq, prev)
			}
			prev = seq
			e, err := logEntry(log.Get(pos))
			if err != nil {
				return fmt.Errorf("history %q seq %d: log record %d: %v", conv, seq, seqOf(pos), err)
			}
			if e.conv != string(conv) || e.seq != seq {
				return fmt.Errorf("history %q seq %d: log record %d is seq %d of %q", conv, seq, seqOf(pos), e.seq, e.conv)
			}
			return nil
		})
		if err == nil && prev > 0 && prev != hb.Sequence() {
			err = fmt.Errorf("history %q ends at seq %d, its Sequence is %d", conv, prev, hb.Sequence())
		}
		return err
	})
	if err != nil {
		return err
	}
	applied := seqOf(tx.Bucket(bucketMeta).Get(keyApplied))
	c := log.Cursor()
	for k, v := c.First(); k != nil && seqOf(k) <= applied; k, v = c.Next() {
		if kept.Get(k) != nil {
			continue
		}
		e, err := logEntry(v)
		if err != nil {
			return fmt.Errorf("log record %d: %v", seqOf(k), err)
		}
		hb := hist.Bucket([]byte(e.conv))
		if hb == nil || !bytes.Equal(hb.Get(seqKey(e.seq)), k) {
			return fmt.Errorf("log record %d (seq %d of %q) is in neither its history nor a queue", seqOf(k), e.seq, e.conv)
		}
	}
	return nil
}

// logEntry decodes the entry of an append record.
func logEntry(rec []byte) (*entry, error) {
	if rec == nil {
		return nil, errors.New("missing")
	}
	r, err := decodeRecord(rec)
	if err != nil {
		return nil, err
	}
	ar, ok := r.(appendRec)
	if !ok {
		return nil, errBadRecord
	}
	return ar.e, nil
}

// splitPair returns the two parts of a pairKey.
func splitPair(k []byte) (a, b string) {
	n, w := binary.Uvarint(k)
	if w <= 0 || uint64(len(k)-w) < n {
		return "", string(k)
	}
	return string(k[w : w+int(n)]), string(k[w+int(n):])
}

// checkInbox verifies the conversation index and the read markers: each
// user's inbox holds one 'o' and one 'c' key per conversation, agreeing on
// (ts, seq), and neither a head nor a marker is past its conversation's
// last checkpointed seq.
func checkInbox(tx *bolt.Tx) error {
	hist, inbox := tx.Bucket(bucketHist), tx.Bucket(bucketInbox)
	lastSeq := func(conv []byte) uint64 {
		if hb := hist.Bucket(conv); hb != nil {
			return hb.Sequence()
		}
		return 0
	}
	err := inbox.ForEachBucket(func(user []byte) error {
		ub := inbox.Bucket(user)
		orders, convs := 0, 0
		err := ub.ForEach(func(k, v []byte) error {
			switch {
			case len(k) > 17 && k[0] == 'o':
				orders++
				conv := k[17:]
				if c := ub.Get(inboxConvKey(string(conv))); !bytes.Equal(c, k[1:17]) {
					return fmt.Errorf("inbox %q: conversation %q is ordered at %x, its head says %x", user, conv, k[1:17], c)
				}
				if _, seq, _ := parseRecency(k[1:]); seq > lastSeq(conv) {
					return fmt.Errorf("inbox %q: conversation %q at seq %d, its history ends at %d", user, conv, seq, lastSeq(conv))
				}
			case len(k) > 1 && k[0] == 'c' && len(v) == 16:
				convs++
			default:
				return fmt.Errorf("inbox %q: bad key %q", user, k)
			}
			return nil
		})
		if err == nil && orders != convs {
			err = fmt.Errorf("inbox %q: %d conversations ordered, %d heads", user, orders, convs)
		}
		return err
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMarks).ForEach(func(pair, v []byte) error {
		user, conv := splitPair(pair)
		if m := seqOf(v); m == 0 || m > lastSeq([]byte(conv)) {
			return fmt.Errorf("marker of %q on %q is %d, the history ends at %d", user, conv, m, lastSeq([]byte(conv)))
		}
		return nil
	})
}
