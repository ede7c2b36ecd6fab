package wshub_test

// The cases of TestConformance, numbered and built as Autobahn|Testsuite's
// (autobahntestsuite/autobahntestsuite/case/caseN_N_N.py); see
// conformance_test.go for how the hub's answers stand in for Autobahn's
// echoes.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// quietTime is how long cases 6.4.x wait after the valid first part for
// the hub to stay silent (Autobahn: 1 s).
const quietTime = 300 * time.Millisecond

// conformanceCases returns every case of the suite.
func conformanceCases(t *testing.T) []confCase {
	var cs []confCase
	for _, section := range [][]confCase{
		framingCases(), pingCases(), reservedBitsCases(), opcodeCases(),
		fragmentationCases(), utf8Cases(t), closeCases(), limitsCases(), hubCases(),
	} {
		cs = append(cs, section...)
	}
	return cs
}

// lightCase is a case of small frames: light cases run several at a time.
func lightCase(id string, steps ...step) confCase { return confCase{id: id, steps: steps} }

// heavyCase is a case of section 9 sizes; its frames are built when it
// runs, as they are too big to hold for all cases at once.
func heavyCase(id string, build func() []step) confCase {
	return confCase{id: id, heavy: true, steps: []step{func(c *rawClient) {
		for _, st := range build() {
			st(c)
		}
	}}}
}

// helloWorld is the text of Autobahn's small messages, sent as a ping command.
const helloWorld = "Hello, world!"

// Section 1: framing, text and binary messages of the lengths around the
// 7-, 16- and 64-bit length encodings.
func framingCases() []confCase {
	var cs []confCase
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536}
	for i, n := range sizes {
		msg, want := textOfLen(n)
		cs = append(cs, lightCase(fmt.Sprintf("1.1.%d", i+1), sendAll(textFrame(msg)), want))
	}
	msg, want := textOfLen(65536)
	cs = append(cs, lightCase("1.1.8", sendChops(997, textFrame(msg)), want))
	for i, n := range sizes {
		cs = append(cs, lightCase(fmt.Sprintf("1.2.%d", i+1), sendAll(finalFrame(opBinary, bytes.Repeat([]byte{0xfe}, n))), wantFail(1003)))
	}
	return append(cs, lightCase("1.2.8", sendChops(997, finalFrame(opBinary, bytes.Repeat([]byte{0xfe}, 65536))), wantFail(1003)))
}

// Section 2: pings and pongs.
func pingCases() []confCase {
	bin := []byte("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")
	fe125 := bytes.Repeat([]byte{0xfe}, 125)
	var pings [][]byte
	var pongs []step
	for i := range 10 {
		p := []byte(fmt.Sprintf("payload-%d", i))
		pings = append(pings, finalFrame(opPing, p))
		pongs = append(pongs, wantPong(p))
	}
	return []confCase{
		lightCase("2.1", sendAll(finalFrame(opPing, nil)), wantPong(nil)),
		lightCase("2.2", sendAll(finalFrame(opPing, []byte(helloWorld))), wantPong([]byte(helloWorld))),
		lightCase("2.3", sendAll(finalFrame(opPing, bin)), wantPong(bin)),
		lightCase("2.4", sendAll(finalFrame(opPing, fe125)), wantPong(fe125)),
		lightCase("2.5", sendAll(finalFrame(opPing, bytes.Repeat([]byte{0xfe}, 126))), wantFail(1002)),
		lightCase("2.6", sendChops(1, finalFrame(opPing, fe125)), wantPong(fe125)),
		// 2.7, 2.8: nothing answers a pong; the closing handshake that
		// ends the case checks that nothing comes before it.
		lightCase("2.7", sendAll(finalFrame(opPong, nil))),
		lightCase("2.8", sendAll(finalFrame(opPong, []byte("unsolicited pong payload")))),
		lightCase("2.9", sendAll(finalFrame(opPong, []byte("unsolicited pong payload")), finalFrame(opPing, []byte("ping payload"))), wantPong([]byte("ping payload"))),
		lightCase("2.10", append([]step{sendEach(pings...)}, pongs...)...),
		lightCase("2.11", append([]step{sendChops(1, pings...)}, pongs...)...),
	}
}

// Section 3: reserved bits, with nothing negotiated that defines them.
// Where a valid message comes first, its answer comes before the close,
// and the ping after the bad frame is not answered.
func reservedBitsCases() []confCase {
	hp := pingCmd(helloWorld)
	bad := func(rsv byte) [][]byte {
		return [][]byte{textFrame(hp), rsvFrame(true, opText, hp, rsv), finalFrame(opPing, nil)}
	}
	return []confCase{
		lightCase("3.1", sendAll(rsvFrame(true, opText, hp, 1)), wantFail(1002)),
		lightCase("3.2", sendAll(bad(2)...), wantEcho(helloWorld), wantFail(1002)),
		lightCase("3.3", sendEach(bad(3)...), wantEcho(helloWorld), wantFail(1002)),
		lightCase("3.4", sendChops(1, bad(4)...), wantEcho(helloWorld), wantFail(1002)),
		lightCase("3.5", sendAll(rsvFrame(true, opBinary, []byte("\x00\xff\xfe\xfd\xfc\xfb\x00\xff"), 5)), wantFail(1002)),
		lightCase("3.6", sendAll(rsvFrame(true, opBinary, []byte(helloWorld), 6)), wantFail(1002)),
		lightCase("3.7", sendAll(rsvFrame(true, opClose, nil, 7)), wantFail(1002)),
	}
}

// Section 4: reserved opcodes, non-control (3-7) and control (11-15).
func opcodeCases() []confCase {
	hp := pingCmd(helloWorld)
	var cs []confCase
	for sub, base := range []byte{3, 11} {
		id := func(n int) string { return fmt.Sprintf("4.%d.%d", sub+1, n) }
		after := func(op byte, p []byte) [][]byte {
			return [][]byte{textFrame(hp), finalFrame(op, p), finalFrame(opPing, nil)}
		}
		cs = append(cs,
			lightCase(id(1), sendAll(finalFrame(base, nil)), wantFail(1002)),
			lightCase(id(2), sendAll(finalFrame(base+1, []byte("reserved opcode payload"))), wantFail(1002)),
			lightCase(id(3), sendAll(after(base+2, nil)...), wantEcho(helloWorld), wantFail(1002)),
			lightCase(id(4), sendAll(after(base+3, []byte(helloWorld))...), wantEcho(helloWorld), wantFail(1002)),
			lightCase(id(5), sendChops(1, after(base+4, []byte(helloWorld))...), wantEcho(helloWorld), wantFail(1002)),
		)
	}
	return cs
}

// Section 5: fragmentation.
func fragmentationCases() []confCase {
	hp := pingCmd(helloWorld)
	f := pingCmdParts("fragment1", "fragment2")
	two := [][]byte{partialFrame(opText, f[0]), finalFrame(opCont, f[1])}
	pp := []byte("ping payload")
	withPing := [][]byte{partialFrame(opText, f[0]), finalFrame(opPing, pp), finalFrame(opCont, f[1])}
	nothingToContinue := func(fin bool) [][]byte {
		return [][]byte{clientFrame(fin, opCont, []byte("non-continuation payload"), true), textFrame(hp)}
	}
	repeated := func(fin bool) [][]byte {
		var out [][]byte
		for range 2 {
			out = append(out, clientFrame(fin, opCont, []byte("fragment1"), true),
				partialFrame(opText, []byte("fragment2")), finalFrame(opCont, []byte("fragment3")))
		}
		return out
	}
	f5 := pingCmdParts("fragment1", "fragment2", "fragment3", "fragment4", "fragment5")
	p1, p2 := []byte("pongme 1!"), []byte("pongme 2!")
	// 5.19, 5.20: Autobahn waits 1 s after the first ping; expecting its
	// pong before the rest is sent checks the same, that a ping inside a
	// fragmented message is answered at once.
	pingsInside := func(write func(...[]byte) step) []step {
		return []step{
			write(partialFrame(opText, f5[0]), partialFrame(opCont, f5[1]), finalFrame(opPing, p1)),
			wantPong(p1),
			write(partialFrame(opCont, f5[2]), partialFrame(opCont, f5[3]), finalFrame(opPing, p2), finalFrame(opCont, f5[4])),
			wantPong(p2),
			wantEcho("fragment1fragment2fragment3fragment4fragment5"),
		}
	}
	return []confCase{
		lightCase("5.1", sendAll(partialFrame(opPing, []byte("fragment1")), finalFrame(opCont, []byte("fragment2"))), wantFail(1002)),
		lightCase("5.2", sendAll(partialFrame(opPong, []byte("fragment1")), finalFrame(opCont, []byte("fragment2"))), wantFail(1002)),
		lightCase("5.3", sendAll(two...), wantEcho("fragment1fragment2")),
		lightCase("5.4", sendEach(two...), wantEcho("fragment1fragment2")),
		lightCase("5.5", sendChops(1, two...), wantEcho("fragment1fragment2")),
		lightCase("5.6", sendAll(withPing...), wantPong(pp), wantEcho("fragment1fragment2")),
		lightCase("5.7", sendEach(withPing...), wantPong(pp), wantEcho("fragment1fragment2")),
		lightCase("5.8", sendChops(1, withPing...), wantPong(pp), wantEcho("fragment1fragment2")),
		lightCase("5.9", sendAll(nothingToContinue(true)...), wantFail(1002)),
		lightCase("5.10", sendEach(nothingToContinue(true)...), wantFail(1002)),
		lightCase("5.11", sendChops(1, nothingToContinue(true)...), wantFail(1002)),
		lightCase("5.12", sendAll(nothingToContinue(false)...), wantFail(1002)),
		lightCase("5.13", sendEach(nothingToContinue(false)...), wantFail(1002)),
		lightCase("5.14", sendChops(1, nothingToContinue(false)...), wantFail(1002)),
		lightCase("5.15", sendAll(partialFrame(opText, f[0]), finalFrame(opCont, f[1]),
			partialFrame(opCont, []byte("fragment3")), finalFrame(opText, []byte("fragment4"))),
			wantEcho("fragment1fragment2"), wantFail(1002)),
		lightCase("5.16", sendAll(repeated(false)...), wantFail(1002)),
		lightCase("5.17", sendAll(repeated(true)...), wantFail(1002)),
		lightCase("5.18", sendAll(partialFrame(opText, []byte("fragment1")), finalFrame(opText, []byte("fragment2"))), wantFail(1002)),
		lightCase("5.19", pingsInside(sendAll)...),
		lightCase("5.20", pingsInside(sendEach)...),
	}
}

// Section 6: UTF-8 handling. A valid text is sent as the cid of a ping
// command and must come back unchanged; an invalid one is sent as it is
// and must fail the connection with 1007 (SPEC §1), as soon as the bad
// byte arrives (6.4.x).
func utf8Cases(t *testing.T) []confCase {
	const mixed = "Hello-µ@ßöäüàá-UTF-8!!"
	const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // κόσμε
	// Invalid at its byte 0xa0 (index 12: a UTF-16 surrogate), as in 6.3.x.
	const badSurrogate = kosme + "\xed\xa0\x80" + "edited"
	cs := []confCase{
		lightCase("6.1.1", sendAll(textFrame(nil)), wantNotJSON()),
		lightCase("6.1.2", sendAll(partialFrame(opText, nil), partialFrame(opCont, nil), finalFrame(opCont, nil)), wantNotJSON()),
		lightCase("6.1.3", sendAll(partialFrame(opText, nil), partialFrame(opCont, pingCmd("middle frame payload")), finalFrame(opCont, nil)),
			wantEcho("middle frame payload")),
		lightCase("6.2.1", sendAll(textFrame(pingCmd(mixed))), wantEcho(mixed)),
		lightCase("6.2.2", sendAll(partFrames(opText, pingCmdParts("Hello-µ@ßöä", "üàá-UTF-8!!"))...), wantEcho(mixed)),
		lightCase("6.2.3", sendAll(fragmentFrames(opText, pingCmd(mixed), 1)), wantEcho(mixed)),
		lightCase("6.2.4", sendAll(fragmentFrames(opText, pingCmd(kosme), 1)), wantEcho(kosme)),
		lightCase("6.3.1", sendAll(textFrame([]byte(badSurrogate))), wantFail(1007)),
		lightCase("6.3.2", sendAll(fragmentFrames(opText, []byte(badSurrogate), 1)), wantFail(1007)),
	}
	// 6.4.x: invalid at the byte 0x90 (index 12; after 0xf4: past U+10FFFF).
	const p1, p2 = kosme, "\xf4\x90\x80\x80"
	const all = p1 + p2 + "edited"
	// The rest of the message is never sent: the hub failed it.
	failFast := func(id string, a, b string) confCase {
		return lightCase(id,
			sendAll(partialFrame(opText, []byte(a))), wantQuiet(quietTime),
			sendAll(partialFrame(opCont, []byte(b))), wantClose(1007, failFastBound),
			answerClose(0))
	}
	failFastChops := func(id string, cut1, cut2 int) confCase {
		f := textFrame([]byte(all))
		h := len(f) - len(all)
		return lightCase(id,
			sendAll(f[:h+cut1]), wantQuiet(quietTime),
			sendAll(f[h+cut1:h+cut2]), wantClose(1007, failFastBound),
			sendAll(f[h+cut2:]), // ends the frame, so that the close answer can follow
			answerClose(0))
	}
	cs = append(cs,
		failFast("6.4.1", p1, p2),
		failFast("6.4.2", all[:12], all[12:13]),
		failFastChops("6.4.3", len(p1), len(p1)+len(p2)),
		failFastChops("6.4.4", 12, 13),
	)
	for g, group := range utf8Groups() {
		for i, seq := range group {
			id := fmt.Sprintf("6.%d.%d", g+5, i+1)
			require.Equal(t, seq.valid, utf8.ValidString(seq.s), "case %s: the table disagrees with unicode/utf8", id)
			if seq.valid {
				cs = append(cs, lightCase(id, sendAll(textFrame(pingCmd(seq.s))), wantEcho(seq.s)))
			} else {
				cs = append(cs, lightCase(id, sendAll(textFrame([]byte(seq.s))), wantFail(1007)))
			}
		}
	}
	return cs
}

// partFrames is a message of opcode op holding the parts, one frame each.
func partFrames(op byte, parts [][]byte) [][]byte {
	out := make([][]byte, len(parts))
	for i, p := range parts {
		if i > 0 {
			op = opCont
		}
		out[i] = clientFrame(i == len(parts)-1, op, p, true)
	}
	return out
}

// utf8Seq is the payload of one of the cases 6.5.1 to 6.23.7.
type utf8Seq struct {
	valid bool
	s     string
}

// utf8Groups are Autobahn's cases 6.5 to 6.23 (case6_x_x.py, after
// Markus Kuhn's UTF-8 decoder capability and stress test): group g holds
// the cases 6.(g+5).1 on, each one text message.
func utf8Groups() [][]utf8Seq {
	valid := func(ss ...string) []utf8Seq {
		var out []utf8Seq
		for _, s := range ss {
			out = append(out, utf8Seq{true, s})
		}
		return out
	}
	invalid := func(ss ...string) []utf8Seq {
		var out []utf8Seq
		for _, s := range ss {
			out = append(out, utf8Seq{false, s})
		}
		return out
	}
	const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	var prefixes []utf8Seq
	for i := 1; i <= len(kosme); i++ {
		prefixes = append(prefixes, utf8Seq{utf8.ValidString(kosme[:i]), kosme[:i]})
	}
	var continuations []byte
	for b := 0x80; b < 0xbf; b++ {
		continuations = append(continuations, byte(b))
	}
	var lonely []string
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for b := r[0]; b < r[1]; b++ {
			s = append(s, byte(b), ' ')
		}
		lonely = append(lonely, string(s))
	}
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	nonChars := valid("\xef\xbf\xbe", "\xef\xbf\xbf")
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f { // past U+10FFFF
				continue
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				if z1 == 0xf0 && z2 == 0x8f { // overlong
					continue
				}
				nonChars = append(nonChars, utf8Seq{true, string([]byte{z1, z2, 0xbf, z3})})
			}
		}
	}
	return [][]utf8Seq{
		// 6.5 Some valid UTF-8 sequences
		valid("hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", kosme),
		// 6.6 All prefixes of a valid UTF-8 string that contains multi-byte code points
		prefixes,
		// 6.7 First possible sequence of a certain length
		valid("\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"),
		// 6.8 First possible sequence length 5/6 (invalid codepoints)
		invalid("\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"),
		// 6.9 Last possible sequence of a certain length
		valid("\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"),
		// 6.10 Last possible sequence length 4/5/6 (invalid codepoints)
		invalid("\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf"),
		// 6.11 Other boundary conditions
		append(valid("\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"), invalid("\xf4\x90\x80\x80")...),
		// 6.12 Unexpected continuation bytes
		invalid("\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80",
			"\x80\xbf\x80\xbf\x80\xbf", string(continuations)),
		// 6.13 Lonely start characters
		invalid(lonely...),
		// 6.14 Sequences with last continuation byte missing
		invalid(missing...),
		// 6.15 Concatenation of incomplete sequences
		invalid(strings.Join(missing, "")),
		// 6.16 Impossible bytes
		invalid("\xfe", "\xff", "\xfe\xfe\xff\xff"),
		// 6.17 Examples of an overlong ASCII character
		invalid("\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"),
		// 6.18 Maximum overlong sequences
		invalid("\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"),
		// 6.19 Overlong representation of the NUL character
		invalid("\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"),
		// 6.20 Single UTF-16 surrogates
		invalid("\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"),
		// 6.21 Paired UTF-16 surrogates
		invalid("\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
			"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"),
		// 6.22 Non-character code points (valid UTF-8)
		nonChars,
		// 6.23 Unicode specials (i.e. replacement char)
		valid("\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf"),
	}
}

// Section 7: close handling. The client closes; the hub answers with a
// close echoing a valid code (1000 for an empty close) or 1002 for a
// code that may not be sent (SPEC §1), and closes TCP at once.
func closeCases() []confCase {
	hw := "Hello World!"
	f := pingCmdParts("fragment1", "fragment2")
	big := bytes.Repeat([]byte("BAsd7&jh23"), 256<<10/10+1)[:256<<10]
	cs := []confCase{
		lightCase("7.1.1", sendAll(textFrame(pingCmd(hw))), wantEcho(hw)),
		lightCase("7.1.2", sendAll(closeFrame(1000, ""), closeFrame(-1, "")), wantAnswer(1000)),
		lightCase("7.1.3", sendAll(closeFrame(1000, ""), finalFrame(opPing, nil)), wantAnswer(1000)),
		lightCase("7.1.4", sendAll(closeFrame(1000, ""), textFrame(pingCmd(hw))), wantAnswer(1000)),
		lightCase("7.1.5", sendAll(partialFrame(opText, f[0]), closeFrame(1000, ""), finalFrame(opCont, f[1])), wantAnswer(1000)),
		// 7.1.6 is informational in Autobahn: the answers to the messages
		// before the close may come, in order, or not; nothing else may.
		lightCase("7.1.6", sendAll(textFrame(big), textFrame(pingCmd(hw)), closeFrame(1000, ""), finalFrame(opPing, nil)), func(c *rawClient) {
			m := c.expect(c.wait)
			if m.op == opText {
				checkNotJSON(c.t, m)
				m = c.expect(c.wait)
			}
			if m.op == opText {
				checkEcho(c.t, m, hw)
				m = c.expect(c.wait)
			}
			c.checkClose(m, 1000)
			c.closed = true
			c.expectTCPEnd(tcpCloseBound)
		}),
		lightCase("7.3.1", sendAll(closeFrame(-1, "")), wantAnswer(1000)),
		lightCase("7.3.2", sendAll(finalFrame(opClose, []byte("a"))), wantAnswer(1002)),
		lightCase("7.3.3", sendAll(closeFrame(1000, "")), wantAnswer(1000)),
		lightCase("7.3.4", sendAll(closeFrame(1000, hw)), wantAnswer(1000)),
		lightCase("7.3.5", sendAll(closeFrame(1000, strings.Repeat("*", 123))), wantAnswer(1000)),
		lightCase("7.3.6", sendAll(closeFrame(1000, strings.Repeat("*", 124))), wantAnswer(1002)),
		// Autobahn takes 1002 or 1007; SPEC §1 says 1007.
		lightCase("7.5.1", sendAll(closeFrame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")), wantAnswer(1007)),
	}
	for i, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cs = append(cs, lightCase(fmt.Sprintf("7.7.%d", i+1), sendAll(closeFrame(code, "")), wantAnswer(code)))
	}
	for i, code := range []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		cs = append(cs, lightCase(fmt.Sprintf("7.9.%d", i+1), sendAll(closeFrame(code, "")), wantAnswer(1002)))
	}
	// Informational in Autobahn; SPEC §1: 5000 and up may not be sent.
	return append(cs,
		lightCase("7.13.1", sendAll(closeFrame(5000, "")), wantAnswer(1002)),
		lightCase("7.13.2", sendAll(closeFrame(65535, "")), wantAnswer(1002)),
	)
}

// Section 9: limits and performance, the sizes Autobahn uses. Text
// messages are ping commands of exactly the size, whose cid comes back;
// binary messages are closed with 1003 at the first.
// Under -race the message sizes are divided by section9Scale.
func limitsCases() []confCase {
	var cs []confCase
	binary := func(n int) []byte { return bytes.Repeat([]byte{0xfe}, n) }
	const k = 1 << 10
	m := (1 << 20) / section9Scale // a MiB, scaled
	for i, n := range []int{64 * k / section9Scale, 256 * k / section9Scale, m, 4 * m, 8 * m, 16 * m} {
		cs = append(cs,
			heavyCase(fmt.Sprintf("9.1.%d", i+1), func() []step {
				msg, want := textOfLen(n)
				return []step{sendAll(textFrame(msg)), want}
			}),
			heavyCase(fmt.Sprintf("9.2.%d", i+1), func() []step {
				return []step{sendAll(finalFrame(opBinary, binary(n))), wantFail(1003)}
			}))
	}
	for i, size := range []int{64, 256, k, 4 * k, 16 * k, 64 * k, 256 * k, 1 << 20, 4 << 20} {
		cs = append(cs,
			heavyCase(fmt.Sprintf("9.3.%d", i+1), func() []step {
				msg, want := textOfLen(4 * m)
				return []step{sendAll(fragmentFrames(opText, msg, size)), want}
			}),
			heavyCase(fmt.Sprintf("9.4.%d", i+1), func() []step {
				return []step{sendAll(fragmentFrames(opBinary, binary(4*m), size)), wantFail(1003)}
			}))
	}
	for i, chop := range []int{64, 128, 256, 512, 1024, 2048} {
		cs = append(cs,
			heavyCase(fmt.Sprintf("9.5.%d", i+1), func() []step {
				msg, want := textOfLen(m)
				return []step{sendChops(chop, textFrame(msg)), want}
			}),
			heavyCase(fmt.Sprintf("9.6.%d", i+1), func() []step {
				return []step{sendChops(chop, finalFrame(opBinary, binary(m))), wantFail(1003)}
			}))
	}
	for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
		// 9.7.x: 1000 round trips, each message sent when the last
		// one's answer came.
		cs = append(cs, heavyCase(fmt.Sprintf("9.7.%d", i+1), func() []step {
			msg, want := textOfLen(n)
			f := textFrame(msg)
			var steps []step
			for range 1000 {
				steps = append(steps, sendAll(f), want)
			}
			return steps
		}))
	}
	for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
		// 9.8.x sends 1000 binary messages; the hub closes at the first.
		cs = append(cs, lightCase(fmt.Sprintf("9.8.%d", i+1), sendAll(finalFrame(opBinary, binary(n))), wantFail(1003)))
	}
	return cs
}

// hubCases are the hub's own, for SPEC §1 and §5 rules Autobahn has no
// case for.
func hubCases() []confCase {
	// A 64-bit length with the top bit set: the stream cannot be parsed
	// on, so the hub cannot see the answer to its close; it must close TCP
	// by the end of its close grace (2 s) at the latest.
	topBit := []byte{0x80 | opText, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4, '{' ^ 1, '}' ^ 2}
	return []confCase{
		lightCase("x.1", sendAll(clientFrame(true, opText, pingCmd(helloWorld), false)), wantFail(1002)), // unmasked
		lightCase("x.2", sendAll(topBit), wantClose(1002, 0), answerClose(2*time.Second+tcpCloseBound)),
		// The edges of SPEC §1's close codes Autobahn leaves out: 1012 to
		// 1014 may be sent, 1015 may not.
		lightCase("x.5", sendAll(closeFrame(1012, "")), wantAnswer(1012)),
		lightCase("x.6", sendAll(closeFrame(1013, "")), wantAnswer(1013)),
		lightCase("x.7", sendAll(closeFrame(1014, "")), wantAnswer(1014)),
		lightCase("x.8", sendAll(closeFrame(1015, "")), wantAnswer(1002)),
		// A frame over the read limit, and a message over it in two frames.
		heavyCase("x.3", func() []step {
			return []step{sendAll(textFrame(bytes.Repeat([]byte("*"), confReadLimit+1))), wantFail(1009)}
		}),
		heavyCase("x.4", func() []step {
			half := bytes.Repeat([]byte("*"), confReadLimit/2+1)
			return []step{sendAll(partialFrame(opText, half), finalFrame(opCont, half)), wantFail(1009)}
		}),
	}
}
