// Package boltstore is the embedded, durable store.Store of a wshub hub: one
// process, one bbolt file, nothing lost across crashes.
//
//	st, err := boltstore.Open("hub.db", boltstore.Options{})
//	...
//	h, err := wshub.New(wshub.Options{Store: st, ...})
//	...
//	defer st.Close() // after the hub is shut down
//
// # Durability
//
// Append, Ack, Join and Leave return nil only after the bbolt transaction
// holding their write was committed and synced to disk (bbolt syncs the
// data pages, then the meta page: two fdatasync calls per commit). A hub
// sends a receipt only after Append returned, so every receipted message
// survives a crash of the process or of the machine. Options.NoSync turns
// the syncs off for people who accept losing the last writes (and, on a
// power loss, possibly the file) in exchange for speed.
//
// # Group commit
//
// Syncing is the cost of a commit, so writes do not get a transaction each:
// one committer goroutine takes the write requests queued by every caller
// (up to Options.MaxBatch at a time), applies all of them in one bbolt
// transaction, syncs once and then answers each caller. Under load many
// writes share one commit; a lone write is committed at once, without
// waiting for company. When more callers are waiting than the queue holds
// (they were just answered and are sending their next write), the
// committer waits for them a little, at most half as long as its last
// commit took, so that steady load does not split into two halves that
// take turns. Every caller still waits for the commit that holds its own
// write. A request that fails (which validation before queueing makes
// rare) is answered with its error and the others of its batch are
// committed without it. An Append refused for a full pending queue (see
// Bounds and retention) writes nothing and holds up nothing: the rest of
// its batch commits in the same transaction.
//
// A commit writes little: each Append adds one record to the end of a log
// (the message, its pending users, its cid), so a batch of hundreds of
// messages to as many conversations dirties a handful of pages. The index
// (history per conversation, pending queue per user) refers to log records
// and is brought up to date by checkpoints, every Options.CheckpointEvery
// records or Options.CheckpointInterval, from an in-memory view of the
// records since the last one. Reads merge the two; Open replays the
// records a crash left unindexed. Stats tells how the time is spent.
//
// A write whose ctx is done while it is queued or being committed returns
// ctx.Err(); its effect may or may not have been committed (it has not if
// ctx was done before the committer picked it up). Retrying an Append with
// the same CID is safe.
//
// # Bounds and retention
//
// bbolt never gives space back to the file system by itself: a page freed
// by a deletion is reused for later writes, but the file keeps the size it
// once reached. So what bounds the file is what the store deletes, and
// these are the knobs:
//
//   - pending: each user's queue holds at most Options.MaxPending messages
//     (default 10,000), and at most Options.MaxPendingPerSender from one
//     sender (default 1,000). An Append that would go past either for any
//     of its recipients is refused with store.ErrPendingFull and writes
//     nothing. A queued message leaves its queue only by Ack, whatever
//     its age: a queued message is a promise to deliver, and these bounds
//     are the explicit limit on what the promises can hold. The bounds
//     are counted per user and per (user, sender) next to the queues, in
//     the same transactions, so a crash cannot make them disagree.
//   - history by count: each conversation keeps its newest
//     Options.MaxHistory messages (default 100,000); Page.First tells how
//     far back it reaches.
//   - history by age: with Options.MaxAge (default off), a message leaves
//     its history once it was committed more than MaxAge ago (the commit
//     time the store records, not the sender's TS: it grows along the log,
//     so the expired messages are a prefix of it and the retained seqs of
//     a conversation stay contiguous). The committer expires them in the
//     background, oldest first, in passes of at most 1,000 messages, each
//     one short transaction between its batches of writes, every
//     MaxAge/8 (at least 10 ms, at most CheckpointInterval) and at once
//     again while a backlog remains; only checkpointed messages are
//     expired, so a message may stay readable up to about
//     CheckpointInterval plus that interval beyond MaxAge.
//   - the file: a message leaves the file when it has left its history
//     (by count or age) and every pending queue. A conversation whose
//     every message expired is dropped: a direct conversation entirely
//     (history bucket, both users' inbox entries and read markers); a room
//     keeps its empty history bucket, which holds its last seq. Seqs never
//     repeat: a dropped direct conversation's last seq raises a seq floor
//     (one number in the file), and a conversation without a history
//     bucket, new or dropped, starts one above it, with its recipient's
//     read marker just below so that Seq - Read counts its one message.
//     Without MaxAge nothing is dropped and every conversation starts at
//     seq 1; with it, new direct conversations start above 1 once one was
//     dropped.
//   - (sender, cid) records: kept at least Options.CIDRetention (default
//     24 h) unless half of Options.MaxCIDs (default 100,000) newer ones
//     exist, and as long as the message is in the file. They are kept
//     in memory (rebuilt from the log by Open), about 100 bytes each, never
//     more than MaxCIDs.
//
// With MaxAge, under a steady load the file stops growing once messages
// expire as fast as new ones arrive (the tests show it for conversations
// between ever new users); what it holds then is about MaxAge of messages,
// the queued ones, the rooms and memberships. Stats.Size is the part of the
// file in use (bbolt grows the file on disk in steps of up to 16 MiB
// beyond it). The file never shrinks: after a burst, or after lowering a
// bound, copy it offline with Compact (or the bbolt command,
// "bbolt compact -o new.db hub.db", from go.etcd.io/bbolt/cmd/bbolt) while
// no store has it open, and replace it with the copy.
//
// Memory: besides the cid records, the store holds the records since the
// last checkpoint, at most CheckpointEvery (default 50,000) messages, and
// the counts of the queues they touched.
//
// A file of the previous layout (wshub-boltstore-4, which kept no counts)
// is upgraded by Open in one transaction.
//
// # Epoch
//
// A random epoch is created when the file is created and stored in it, so
// seqs keep their meaning across restarts; it changes only if the file is
// replaced.
//
// # Files
//
// Open refuses, without writing to it, a file that is not a bbolt
// database (ErrNotBolt), a bbolt database of another program
// (ErrNotStore) or a damaged one (ErrCorrupt), and gives up after
// Options.OpenTimeout on a file another process holds (ErrLocked).
//
// bbolt's list of free pages is not written with each commit
// (bolt.Options.NoFreelistSync): written whole and contiguously, a long
// one made the file grow while retention freed pages. Close writes it
// once, so that the next Open reads it; after a crash Open rebuilds it by
// reading every page in use, after checking each of them itself (a
// damaged page is ErrCorrupt, not a panic): about 0.3 s for a 260 MiB
// file of 1 M messages, 4 s for 2.6 GiB and 10 M with the file in the
// page cache, 82 s for that file read from this machine's disk; after a
// Close, 0.05 s.
//
// Reads (History, Pending, PendingPage, Rooms, Members) run in read-only
// transactions, concurrently with each other and with the committer.
package boltstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/wshub/wshub/store"
)

// Errors returned by Open. Each is wrapped with the file name; compare with
// errors.Is.
var (
	// ErrLocked is returned when another process (or another Open in this
	// process) holds the file and did not release it within
	// Options.OpenTimeout.
	ErrLocked = errors.New("wshub/boltstore: database file is locked by another process")
	// ErrNotBolt is returned when the file exists and is not a bbolt
	// database. The file is left untouched.
	ErrNotBolt = errors.New("wshub/boltstore: file is not a bbolt database")
	// ErrNotStore is returned when the file is a bbolt database of some
	// other program (it has buckets but no wshub store layout). The file is
	// left untouched.
	ErrNotStore = errors.New("wshub/boltstore: bbolt database is not a wshub store")
	// ErrCorrupt is returned by Open when the file is a damaged bbolt
	// database or wshub store: bad checksums, truncated, an unknown layout
	// version, an undecodable log record, or (with Options.VerifyOnOpen) an
	// inconsistent page tree. The file is left untouched. Reads and writes
	// that meet damage return it too (as far as bbolt notices it).
	ErrCorrupt = errors.New("wshub/boltstore: database file is damaged")
)

// Defaults used for the zero fields of Options.
const (
	DefaultOpenTimeout  = 2 * time.Second
	DefaultMaxHistory   = 100_000
	DefaultMaxPending   = 10_000
	DefaultMaxPerSender = 1_000
	DefaultCIDRetention = 24 * time.Hour
	DefaultMaxCIDs      = 100_000
	DefaultMaxBatch     = 1000

	DefaultCheckpointEvery    = 50_000
	DefaultCheckpointInterval = 5 * time.Second
	DefaultFileMode           = os.FileMode(0o600)
)

// Options configures Open. The zero value of every field means the
// documented default.
type Options struct {
	// OpenTimeout bounds how long Open waits for the file lock held by
	// another process before failing with ErrLocked. Zero means
	// DefaultOpenTimeout (2 s); negative means fail at once.
	OpenTimeout time.Duration

	// NoSync turns off syncing the file on every commit. Writes then return
	// once they are in the operating system's cache: they survive a crash
	// of the process, but a crash of the machine may lose the latest
	// receipted writes or leave the file damaged. Off by default; use only
	// if you accept that risk.
	NoSync bool

	// MaxHistory is the number of newest messages kept per conversation.
	// Zero means DefaultMaxHistory (100,000); negative means unbounded.
	MaxHistory int
	// MaxAge is how long a message stays in its conversation's history,
	// counted from the commit of its Append (the time the store recorded
	// with it, not the sender's TS). Older messages leave the history,
	// oldest first, in the background, and the file once no pending queue
	// holds them: a queue keeps a message until it is acked, whatever its
	// age. A direct conversation with nothing left is dropped; its seqs
	// never repeat (see Bounds and retention). Zero (the default) or
	// negative means no age bound: only MaxHistory bounds a history.
	MaxAge time.Duration
	// MaxPending is the most messages one user's pending queue holds; an
	// Append past it is refused with store.ErrPendingFull. Zero means
	// DefaultMaxPending (10,000); negative means unbounded.
	MaxPending int
	// MaxPendingPerSender is the most messages from one sender that one
	// user's pending queue holds, so that one sender cannot fill it for
	// everyone; an Append past it is refused with store.ErrPendingFull.
	// Zero means DefaultMaxPerSender (1,000); negative means unbounded.
	MaxPendingPerSender int
	// CIDRetention is how long a (sender, cid) record is kept at least
	// (unless MaxCIDs pushes it out or its message leaves the history).
	// Zero means DefaultCIDRetention (24 h).
	CIDRetention time.Duration
	// MaxCIDs bounds the number of (sender, cid) records, which live in
	// memory; a record is kept while fewer than MaxCIDs/2 are newer. Zero
	// means DefaultMaxCIDs (100,000); negative means unbounded.
	MaxCIDs int

	// CheckpointEvery is the number of log records (Appends and Acks)
	// after which the committer checkpoints them into the index; it bounds
	// the memory held for them and the work of replaying them in
	// Open. Zero means DefaultCheckpointEvery (50,000).
	CheckpointEvery int
	// CheckpointInterval is the longest time a log record waits for its
	// checkpoint. Zero means DefaultCheckpointInterval (5 s).
	CheckpointInterval time.Duration

	// MaxBatch is the most write requests applied in one transaction.
	// Zero means DefaultMaxBatch (1000). MaxBatch 1 gives one transaction
	// per write (the naive baseline of the benchmarks).
	MaxBatch int

	// VerifyOnOpen walks every page of the file in Open and fails with
	// ErrCorrupt if the tree is inconsistent, or if the pending queues
	// disagree with their counts (see the bounds). Its cost grows with the
	// file size. Without it Open checks the meta pages, the file length and
	// the layout only.
	VerifyOnOpen bool

	// FileMode is the permission of a file Open creates. Zero means 0600.
	FileMode os.FileMode

	// Logger receives the store's error reports. Nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.OpenTimeout == 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.MaxHistory == 0 {
		o.MaxHistory = DefaultMaxHistory
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxPendingPerSender == 0 {
		o.MaxPendingPerSender = DefaultMaxPerSender
	}
	if o.CIDRetention <= 0 {
		o.CIDRetention = DefaultCIDRetention
	}
	if o.MaxCIDs == 0 {
		o.MaxCIDs = DefaultMaxCIDs
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Store is a store.Store kept in one bbolt file. Create it with Open and
// release it with Close.
type Store struct {
	db    *bolt.DB
	path  string
	epoch string
	opts  Options
	log   *slog.Logger

	// reqs carries write requests to the committer. It is never closed:
	// senders watch quit and stopped instead.
	reqs chan *request
	// quit is closed by Close (once) to tell the committer to flush and stop.
	quit chan struct{}
	// notify carries committed batches from the committer to the
	// notifier goroutine, which answers their callers. Closed by the
	// committer when it stops.
	notify chan []*request
	// stopped is closed by the committer when every request it took has
	// been answered.
	stopped chan struct{}

	// mu guards ov (the pointer, and its maps and slices: see overlay).
	mu sync.RWMutex
	ov *overlay
	// cids is the (sender, cid) index. Committer only.
	cids *cidIndex
	// counts counts the pending queues for the bounds (see counts.go).
	// Committer only.
	counts *counter
	// inflight counts the requests queued or being committed whose
	// callers wait (see linger).
	inflight atomic.Int64
	// lastCommit is how long the last batch transaction took, and
	// lingerTimer the timer of linger. Committer only.
	lastCommit  time.Duration
	lingerTimer *time.Timer
	// retryCheckpoint is the earliest time for the next checkpoint after
	// one failed. Committer only.
	retryCheckpoint time.Time

	stats stats

	// now is the clock of the commit times (the age MaxAge measures) and
	// of the expiry; time.Now except in tests.
	now func() time.Time
	// expireBatch is the most log records one expiry pass handles
	// (defaultExpireBatch).
	expireBatch int
	// expireReq carries a test's request to checkpoint and expire now
	// (see export_test.go); the committer answers on the channel sent.
	expireReq chan chan int

	// ackWork, if not nil, is told how many acks of the overlay a read of
	// the pending queue copied or looked up (pendingAfter). Set by tests
	// only (see export_test.go), under mu; called under mu's read lock.
	ackWork func(n int)

	// closed is set by Close before anything else; methods check it first.
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error // written inside closeOnce, read after it
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.PendingPager = (*Store)(nil)
)

// Open opens the store file at path, creating it (and a new epoch) if it
// does not exist or is empty. Zero Options mean the defaults.
//
// Open fails with an error wrapping ErrLocked, ErrNotBolt, ErrNotStore or
// ErrCorrupt (and naming the file) instead of waiting forever or
// overwriting a file that is not a sound wshub store.
func Open(path string, opts Options) (*Store, error) {
	s, err := openFile(path, opts)
	if err != nil {
		return nil, err
	}
	go s.commitLoop()
	return s, nil
}

// openFile opens and checks the file and builds the Store, without starting
// its committer.
func openFile(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	epoch, err := prepare(db, path, opts)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	ov, cids, counts, err := replay(db, path, opts)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Store{
		db:      db,
		path:    path,
		epoch:   epoch,
		opts:    opts,
		ov:      ov,
		cids:    cids,
		counts:  counts,
		log:     opts.Logger.With("store", "boltstore", "path", path),
		reqs:    make(chan *request, opts.MaxBatch),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		notify:  make(chan []*request, 4),

		now:         time.Now,
		expireBatch: defaultExpireBatch,
		expireReq:   make(chan chan int),
	}
	s.lingerTimer = time.NewTimer(time.Hour)
	s.lingerTimer.Stop()
	return s, nil
}

// openBolt opens the bbolt file and maps bbolt's errors (and panics on a
// damaged file) to the package's errors.
func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	timeout := opts.OpenTimeout
	if timeout < 0 {
		timeout = time.Nanosecond
	}
	var file *os.File // the file bbolt opened, to release it after a panic
	bopts := &bolt.Options{
		Timeout:      timeout,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
		// Not written with each commit: a long freelist, written
		// whole and contiguous, made the file grow under retention
		// (docs/benchmarks.md, "Retention"). Open rebuilds it,
		// after checkFile walked the pages (walkPages).
		NoFreelistSync: true,
		// Map address space, not memory: growing the file then rarely
		// remaps, which would copy every node of the writing transaction
		// and wait for readers.
		InitialMmapSize: initialMmapSize,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	db, err = bolt.Open(path, opts.FileMode, bopts)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, path, opts.OpenTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	default:
		return nil, fmt.Errorf("wshub/boltstore: open %s: %w", path, err)
	}
}

// prepare checks the layout of an opened file, creating it in a new (empty)
// database, and returns the epoch.
func prepare(db *bolt.DB, path string, opts Options) (epoch string, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	fresh, upgrade := false, false
	err = db.View(func(tx *bolt.Tx) error {
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("wshub/boltstore: stat %s: %w", path, err)
		}
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: %s: file is %d bytes, its data reaches %d (truncated)", ErrCorrupt, path, fi.Size(), tx.Size())
		}
		if opts.VerifyOnOpen {
			var first error
			for cerr := range tx.Check() { // drain: Check's goroutine uses tx
				if first == nil {
					first = cerr
				}
			}
			if first != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, first)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			k, _ := tx.Cursor().First()
			if k != nil {
				return fmt.Errorf("%w: %s", ErrNotStore, path)
			}
			fresh = true
			return nil
		}
		switch v := meta.Get(keyFormat); string(v) {
		case formatVersion:
		case formatVersion4, formatVersion5:
			upgrade = true
		default:
			return fmt.Errorf("%w: %s: unknown layout %q", ErrCorrupt, path, v)
		}
		epoch = string(meta.Get(keyEpoch))
		if epoch == "" {
			return fmt.Errorf("%w: %s: no epoch", ErrCorrupt, path)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil && !(upgrade && slices.ContainsFunc(slices.Concat(buckets5, buckets6), func(b []byte) bool { return bytes.Equal(b, name) })) {
				return fmt.Errorf("%w: %s: bucket %q missing", ErrCorrupt, path, name)
			}
		}
		if opts.VerifyOnOpen && !upgrade {
			if err := checkQueues(tx); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
			}
		}
		return nil
	})
	if err == nil && upgrade {
		if err = db.Update(migrate); err != nil {
			err = fmt.Errorf("wshub/boltstore: upgrade %s: %w", path, err)
		}
	}
	if err != nil || !fresh {
		return epoch, err
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails
	epoch = hex.EncodeToString(rnd[:])
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
			return err
		}
		return meta.Put(keyEpoch, []byte(epoch))
	})
	if err != nil {
		return "", fmt.Errorf("wshub/boltstore: initialize %s: %w", path, err)
	}
	return epoch, nil
}

// replay rebuilds the overlay from the records committed since the last
// checkpoint: the log after meta/applied and the acks bucket, merged in
// position order; and the committer's counts of the queues, which are the
// index's plus the replayed records'.
func replay(db *bolt.DB, path string, opts Options) (ov *overlay, cids *cidIndex, counts *counter, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	now := time.Now()
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		if cids, err = loadCIDs(tx, opts, now); err != nil {
			return fmt.Errorf("%w: %s: log: %v", ErrCorrupt, path, err)
		}
		meta := tx.Bucket(bucketMeta)
		ov = newOverlay(seqOf(meta.Get(keyGen)) + 1)
		counts = newCounter()
		counts.begin(tx, ov)
		logC := tx.Bucket(bucketLog).Cursor()
		ackC := tx.Bucket(bucketAcks).Cursor()
		lk, lv := logC.Seek(seqKey(seqOf(meta.Get(keyApplied)) + 1))
		ak, av := ackC.First()
		for lk != nil || ak != nil {
			var k, v []byte
			if ak == nil || (lk != nil && seqOf(lk) < seqOf(ak)) {
				k, v = lk, lv
				lk, lv = logC.Next()
			} else {
				k, v = ak, av
				ak, av = ackC.Next()
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("%w: %s: record %d: %v", ErrCorrupt, path, seqOf(k), err)
			}
			switch rec := rec.(type) {
			case appendRec:
				rec.e.pos = seqOf(k)
				want := ov.lastSeq(rec.e.conv)
				if want == 0 {
					if hb := tx.Bucket(bucketHist).Bucket([]byte(rec.e.conv)); hb != nil {
						want = hb.Sequence()
					} else {
						// Started at the seq floor of its commit, which
						// later expiry may have raised: any seq.
						rec.e.fresh = true
					}
				}
				if rec.e.seq == 0 || (!rec.e.fresh && rec.e.seq != want+1) {
					return fmt.Errorf("%w: %s: record %d: seq %d after %d", ErrCorrupt, path, seqOf(k), rec.e.seq, want)
				}
				counts.enqueue(rec.pending, rec.e.from, rec.e.id)
				ov.applyAppend(rec, now)
			case ackRec:
				counts.ack(rec.user, rec.ids)
				ov.applyAck(rec, now)
			case readRec:
				ov.applyRead(rec, now)
			}
		}
		counts.commit()
		return nil
	})
	return ov, cids, counts, err
}

// Path returns the file name the store was opened with.
func (s *Store) Path() string { return s.path }

// Epoch returns the epoch stored in the file (see store.Page.Epoch).
func (s *Store) Epoch() string { return s.epoch }

// Close stops accepting writes, commits the writes already queued,
// checkpoints, and closes the file. Writes that race with Close either
// succeed or return store.ErrClosed. Later calls return the first call's
// result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		<-s.stopped
		// One last commit writes the freelist, so that the next Open
		// reads it instead of walking every page.
		s.db.NoFreelistSync = false
		if err := s.safely(func() error { return s.db.Update(func(*bolt.Tx) error { return nil }) }); err != nil {
			s.log.Warn("wshub/boltstore: writing the freelist at close failed; the next Open rebuilds it", "err", err)
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("wshub/boltstore: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// view runs fn in a read-only transaction, mapping a closed database to
// store.ErrClosed.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.safely(func() error { return s.db.View(fn) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// safely runs fn, turning a panic of bbolt on a damaged page (or a fault
// reading the memory map) into an error wrapping ErrCorrupt. bbolt rolls
// back the transaction fn was in before the panic reaches here.
func (s *Store) safely(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("bbolt failed on a damaged file", "panic", r)
			err = corruptf(s.path, "%v", r)
		}
	}()
	return fn()
}

func seqOf(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return uint64(k[0])<<56 | uint64(k[1])<<48 | uint64(k[2])<<40 | uint64(k[3])<<32 |
		uint64(k[4])<<24 | uint64(k[5])<<16 | uint64(k[6])<<8 | uint64(k[7])
}

// initialMmapSize is the size of address space bbolt maps at first.
const initialMmapSize = 1 << 30
