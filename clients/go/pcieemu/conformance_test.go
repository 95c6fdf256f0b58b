package pcieemu

// The core subset of the language-neutral conformance suite (tests/Conformance/cases/*.json),
// run through this client's API: every case whose steps use only platform, config, MMIO and
// memory operations (the Session, interrupt, Ethernet and IOMMU cases run in the C# and Python
// runners). One subtest per case; a failure names the step and the reason.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

type confStep map[string]interface{}

type confCase struct {
	Name  string     `json:"name"`
	Spec  string     `json:"spec"`
	Steps []confStep `json:"steps"`
}

var coreOps = map[string]bool{"reset": true, "get_platform": true, "list_functions": true, "read_config": true,
	"write_config": true, "read_mmio": true, "write_mmio": true, "read_memory": true, "write_memory": true, "wait": true}

// maxWaitMs is the longest pause a "wait" step may ask for (a typo fails instead of hanging).
const maxWaitMs = 10000

var bdfRe = regexp.MustCompile(`^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)

func casesDir() string {
	if d := os.Getenv("PCIEEMU_CONFORMANCE_CASES"); d != "" {
		return d
	}
	return conformanceDir("cases")
}

// conformanceDir is tests/Conformance/REL in the repository this package is in.
func conformanceDir(rel string) string {
	_, file, _, _ := runtime.Caller(0)
	here := filepath.Dir(file)
	if real, err := filepath.EvalSymlinks(here); err == nil {
		here = real
	}
	return filepath.Join(here, "../../../tests/Conformance", rel)
}

type caseFailure struct{ msg string }

func (e caseFailure) Error() string { return e.msg }

func failf(format string, a ...interface{}) error { return caseFailure{fmt.Sprintf(format, a...)} }

type confRunner struct {
	c   *Client
	ctx context.Context
	env map[string]uint64
}

func (r *confRunner) eval(v interface{}) (uint64, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case float64:
		return uint64(x), nil
	case json.Number:
		return strconv.ParseUint(string(x), 0, 64)
	case string:
		var total uint64
		for _, term := range strings.Split(strings.ReplaceAll(x, " ", ""), "+") {
			switch {
			case strings.HasPrefix(term, "$"):
				v, ok := r.env[term[1:]]
				if !ok {
					return 0, failf("bad case data: variable %s is not set by an earlier step", term)
				}
				total += v
			case bdfRe.MatchString(term):
				rid, err := ParseBDF(term)
				if err != nil {
					return 0, err
				}
				total += uint64(rid)
			default:
				n, err := strconv.ParseUint(term, 0, 64)
				if err != nil {
					return 0, failf("bad case data: cannot read %q as a number", term)
				}
				total += n
			}
		}
		return total, nil
	}
	return 0, failf("bad case data: expected a number, got %v", v)
}

func (r *confRunner) field(s confStep, k string) (uint64, error) {
	v, ok := s[k]
	if !ok {
		return 0, failf("bad case data: missing '%s'", k)
	}
	return r.eval(v)
}

func (r *confRunner) expect(s confStep) map[string]interface{} {
	if e, ok := s["expect"].(map[string]interface{}); ok {
		return e
	}
	return map[string]interface{}{}
}

// grpcErr checks an expected (or unexpected) gRPC error; it returns true when the step expected one.
func (r *confRunner) grpcErr(s confStep, err error) (bool, error) {
	want, _ := r.expect(s)["error"].(map[string]interface{})
	if err == nil {
		if want != nil {
			return false, failf("expected gRPC error %v, the call succeeded", want["code"])
		}
		return false, nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return false, err
	}
	code := strings.ToUpper(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(st.Code().String(), "${1}_${2}"))
	if want == nil {
		return false, failf("unexpected gRPC error %s: %s", code, st.Message())
	}
	if code != want["code"] {
		return false, failf("gRPC error %s (%s), expected %v", code, st.Message(), want["code"])
	}
	if needle, _ := want["message_contains"].(string); needle != "" && !strings.Contains(strings.ToLower(st.Message()), strings.ToLower(needle)) {
		return false, failf("error message %q does not name %q", st.Message(), needle)
	}
	return true, nil
}

func (r *confRunner) checkStatus(what string, actual pb.CompletionStatus, s confStep) error {
	want, _ := r.expect(s)["status"].(string)
	if want == "" {
		want = "SUCCESSFUL"
	}
	full := want
	if !strings.HasPrefix(full, "COMPLETION_STATUS_") {
		full = "COMPLETION_STATUS_" + full
	}
	if _, ok := pb.CompletionStatus_value[full]; !ok {
		return failf("bad case data: unknown status %s", want)
	}
	if actual.String() != full {
		return failf("%s: status %s, expected %s", what, actual, want)
	}
	return nil
}

// maskOf evaluates m[key], or all ones when the key is absent.
func (r *confRunner) maskOf(m map[string]interface{}, key string) (uint64, error) {
	if v, ok := m[key]; ok {
		return r.eval(v)
	}
	return ^uint64(0), nil
}

func (r *confRunner) checkValue(what string, actual uint64, s confStep) error {
	e := r.expect(s)
	wv, ok := e["value"]
	if !ok {
		return nil
	}
	mask, err := r.maskOf(e, "mask")
	if err != nil {
		return err
	}
	want, err := r.eval(wv)
	if err != nil {
		return err
	}
	if actual&mask != want&mask {
		return failf("%s: value %#x, expected %#x; raw %#x", what, actual&mask, want&mask, actual)
	}
	return nil
}

func (r *confRunner) save(s confStep, v uint64) error {
	name, _ := s["save"].(string)
	if name == "" {
		return nil
	}
	mask, err := r.maskOf(s, "save_mask")
	if err != nil {
		return err
	}
	r.env[name] = v & mask
	return nil
}

// compare checks a message field (bool, integer, string or enum) against a case value.
func (r *confRunner) compare(path string, actual interface{}, want interface{}) error {
	if wb, ok := want.(bool); ok {
		if ab, ok := actual.(bool); !ok || ab != wb {
			return failf("%s: %v, expected %v", path, actual, want)
		}
		return nil
	}
	rv := reflect.ValueOf(actual)
	switch rv.Kind() {
	case reflect.String:
		if rv.String() != want {
			return failf("%s: %q, expected %v", path, rv.String(), want)
		}
		return nil
	case reflect.Int32:
		if st, ok := actual.(fmt.Stringer); ok { // an enum: compare by name
			if st.String() != want {
				return failf("%s: %s, expected %v", path, st, want)
			}
			return nil
		}
	}
	var a uint64
	switch rv.Kind() {
	case reflect.Uint32, reflect.Uint64:
		a = rv.Uint()
	case reflect.Int, reflect.Int32, reflect.Int64:
		a = uint64(rv.Int())
	case reflect.Bool:
		return failf("%s: %v, expected %v", path, actual, want)
	default:
		return failf("%s: cannot compare a %T", path, actual)
	}
	w, err := r.eval(want)
	if err != nil {
		return err
	}
	if a != w {
		return failf("%s: %#x, expected %#x", path, a, w)
	}
	return nil
}

// protoField finds a field by its proto name (struct tag protobuf:"...,name=x,...").
func protoField(v reflect.Value, name string) (reflect.Value, bool) {
	for v.Kind() == reflect.Ptr {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if strings.Contains(t.Field(i).Tag.Get("protobuf"), ",name="+name+",") {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func (r *confRunner) data(spec interface{}) ([]byte, error) {
	if m, ok := spec.(map[string]interface{}); ok {
		n, err := r.eval(m["length"])
		if err != nil {
			return nil, err
		}
		var fill uint64
		if f, ok := m["fill"]; ok {
			if fill, err = r.eval(f); err != nil {
				return nil, err
			}
		}
		return bytes.Repeat([]byte{byte(fill)}, int(n)), nil
	}
	s, _ := spec.(string)
	return hex.DecodeString(strings.ReplaceAll(s, " ", ""))
}

func (r *confRunner) step(s confStep) error {
	op, _ := s["op"].(string)
	e := r.expect(s)
	switch op {
	case "reset":
		resp, err := r.c.Platform.ResetPlatform(r.ctx, &pb.ResetPlatformRequest{})
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		if want, ok := e["functions"]; ok {
			return r.compare("functions", resp.Functions, want)
		}
	case "get_platform":
		p, err := r.c.GetPlatform(r.ctx)
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		fields, _ := e["fields"].(map[string]interface{})
		paths := make([]string, 0, len(fields))
		for k := range fields {
			paths = append(paths, k)
		}
		sort.Strings(paths)
		for _, path := range paths {
			cur := reflect.ValueOf(p)
			for _, part := range strings.Split(path, ".") {
				if idx, err := strconv.Atoi(part); err == nil {
					if cur.Kind() != reflect.Slice || idx >= cur.Len() {
						return failf("%s: index %d out of range", path, idx)
					}
					cur = cur.Index(idx)
					continue
				}
				f, ok := protoField(cur, part)
				if !ok {
					return failf("%s: no field '%s'", path, part)
				}
				cur = f
			}
			if err := r.compare(path, cur.Interface(), fields[path]); err != nil {
				return err
			}
		}
	case "list_functions":
		fns, err := r.c.ListFunctions(r.ctx)
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		byRid := map[uint64]*pb.Function{}
		var got []string
		for _, f := range fns {
			byRid[uint64(f.Rid)] = f
			got = append(got, FormatBDF(uint32(f.Rid)))
		}
		if rids, ok := e["rids"].([]interface{}); ok {
			var want []string
			for _, x := range rids {
				v, err := r.eval(x)
				if err != nil {
					return err
				}
				want = append(want, FormatBDF(uint32(v)))
			}
			if strings.Join(got, ", ") != strings.Join(want, ", ") {
				return failf("functions %s; expected %s", strings.Join(got, ", "), strings.Join(want, ", "))
			}
		}
		funcs, _ := e["functions"].(map[string]interface{})
		for ridText, fv := range funcs {
			rid, err := r.eval(ridText)
			if err != nil {
				return err
			}
			f := byRid[rid]
			if f == nil {
				return failf("function %s is not listed", FormatBDF(uint32(rid)))
			}
			for key, want := range fv.(map[string]interface{}) {
				name := FormatBDF(uint32(rid))
				switch key {
				case "bars":
					for idx, bf := range want.(map[string]interface{}) {
						var bar *pb.Bar
						for _, b := range f.Bars {
							if strconv.Itoa(int(b.Index)) == idx {
								bar = b
							}
						}
						if bar == nil {
							return failf("%s: BAR %s not listed", name, idx)
						}
						for bk, bv := range bf.(map[string]interface{}) {
							fld, ok := protoField(reflect.ValueOf(bar), bk)
							if !ok {
								return failf("%s bars[%s]: no field '%s'", name, idx, bk)
							}
							if err := r.compare(fmt.Sprintf("%s bars[%s].%s", name, idx, bk), fld.Interface(), bv); err != nil {
								return err
							}
						}
					}
				case "bar_count":
					if err := r.compare(name+" bar count", uint32(len(f.Bars)), want); err != nil {
						return err
					}
				default:
					fld, ok := protoField(reflect.ValueOf(f), key)
					if !ok {
						return failf("%s: no field '%s'", name, key)
					}
					if err := r.compare(name+"."+key, fld.Interface(), want); err != nil {
						return err
					}
				}
			}
		}
		absent, _ := e["absent"].([]interface{})
		for _, x := range absent {
			rid, err := r.eval(x)
			if err != nil {
				return err
			}
			if byRid[rid] != nil {
				return failf("function %s is listed but should not be", FormatBDF(uint32(rid)))
			}
		}
	case "read_config", "write_config":
		rid, err1 := r.field(s, "rid")
		off, err2 := r.field(s, "offset")
		w, err3 := r.field(s, "width")
		for _, err := range []error{err1, err2, err3} {
			if err != nil {
				return err
			}
		}
		what := fmt.Sprintf("config %s %s +%#x/%d", op[:len(op)-7], FormatBDF(uint32(rid)), off, w)
		// Through the raw request so out-of-range fields reach the server as the case wrote them.
		if op == "read_config" {
			resp, err := r.c.Config.ReadConfig(r.ctx, &pb.ReadConfigRequest{Rid: uint32(rid), Offset: uint32(off), Width: uint32(w)})
			if got, err := r.grpcErr(s, err); got || err != nil {
				return err
			}
			if err := r.checkStatus(what, resp.Status, s); err != nil {
				return err
			}
			if err := r.checkValue(what, uint64(resp.Value), s); err != nil {
				return err
			}
			return r.save(s, uint64(resp.Value))
		}
		v, err := r.field(s, "value")
		if err != nil {
			return err
		}
		resp, err := r.c.Config.WriteConfig(r.ctx, &pb.WriteConfigRequest{Rid: uint32(rid), Offset: uint32(off), Width: uint32(w), Value: uint32(v)})
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		return r.checkStatus(what, resp.Status, s)
	case "read_mmio":
		a, err1 := r.field(s, "address")
		w, err2 := r.field(s, "width")
		if err1 != nil || err2 != nil {
			return failf("bad case data: %v %v", err1, err2)
		}
		st, v, err := r.c.ReadMmio(r.ctx, a, int(w))
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		what := fmt.Sprintf("mmio read %#x/%d", a, w)
		if err := r.checkStatus(what, st, s); err != nil {
			return err
		}
		if err := r.checkValue(what, v, s); err != nil {
			return err
		}
		return r.save(s, v)
	case "write_mmio":
		a, err1 := r.field(s, "address")
		w, err2 := r.field(s, "width")
		v, err3 := r.field(s, "value")
		if err1 != nil || err2 != nil || err3 != nil {
			return failf("bad case data: %v %v %v", err1, err2, err3)
		}
		st, err := r.c.WriteMmio(r.ctx, a, int(w), v)
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		return r.checkStatus(fmt.Sprintf("mmio write %#x/%d", a, w), st, s)
	case "read_memory":
		a, err1 := r.field(s, "address")
		n, err2 := r.field(s, "length")
		if err1 != nil || err2 != nil {
			return failf("bad case data: %v %v", err1, err2)
		}
		d, err := r.c.ReadMemory(r.ctx, a, int(n))
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		if uint64(len(d)) != n {
			return failf("read %d bytes, expected %d", len(d), n)
		}
		if spec, ok := e["data"]; ok {
			want, err := r.data(spec)
			if err != nil {
				return err
			}
			if !bytes.Equal(d, want) {
				return failf("data differs from the expected %d bytes", len(want))
			}
		}
	case "write_memory":
		a, err := r.field(s, "address")
		if err != nil {
			return err
		}
		d, err := r.data(s["data"])
		if err != nil {
			return err
		}
		resp, err := r.c.Memory.WriteMemory(r.ctx, &pb.WriteMemoryRequest{Address: a, Data: d})
		if got, err := r.grpcErr(s, err); got || err != nil {
			return err
		}
		if want, ok := e["length"]; ok {
			return r.compare("length", resp.Length, want)
		}
	case "wait":
		// Time on the machine's clock, as a driver waits (100 ms after VF Enable or an FLR): the
		// server's clock is the wall clock, so a sleep here is that wait.
		ms, err := r.field(s, "ms")
		if err != nil {
			return err
		}
		if ms == 0 || ms > maxWaitMs {
			return failf("bad case data: 'ms' must be 1..%d, got %d", maxWaitMs, ms)
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	default:
		return failf("op %s is not in the core subset", op)
	}
	return nil
}

// loadCases reads every case of dir/*.json, files in name order.
func loadCases(t *testing.T, dir string) []confCase {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files in %s: %v", dir, err)
	}
	sort.Strings(files)
	var cases []confCase
	for _, f := range files {
		raw, err := ioutil.ReadFile(f)
		must(t, err)
		var doc struct {
			Cases []confCase `json:"cases"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cases = append(cases, doc.Cases...)
	}
	return cases
}

// coreSubset keeps the cases whose steps use only core ops (no nested 'while' steps).
func coreSubset(cases []confCase) []confCase {
	var core []confCase
	for _, c := range cases {
		ok := true
		for _, s := range c.Steps {
			op, _ := s["op"].(string)
			if _, hasWhile := s["while"]; !coreOps[op] || hasWhile {
				ok = false
			}
		}
		if ok {
			core = append(core, c)
		}
	}
	return core
}

// runCases runs each case as a subtest named after it against target (its token in tokenFile).
func runCases(t *testing.T, target, tokenFile string, cases []confCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := DialWith(ctx, target, Options{TokenFile: tokenFile})
	must(t, err)
	defer c.Close()
	for _, kase := range cases {
		kase := kase
		t.Run(kase.Name, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			defer ccancel()
			r := &confRunner{c: c, ctx: cctx, env: map[string]uint64{}}
			if err := c.ResetPlatform(cctx); err != nil {
				t.Fatal(err)
			}
			for i, s := range kase.Steps {
				if err := r.step(s); err != nil {
					t.Fatalf("%s [%s]: step %d (%v): %v", kase.Name, kase.Spec, i+1, s["op"], err)
				}
			}
		})
	}
}

func TestConformanceCoreSubset(t *testing.T) {
	cases := loadCases(t, casesDir())
	core := coreSubset(cases)
	if len(core) < 100 && os.Getenv("PCIEEMU_CONFORMANCE_CASES") == "" {
		t.Fatalf("only %d of %d cases are in the core subset", len(core), len(cases))
	}
	// Over the Unix socket, which the server serves with its direct gRPC loop (issue 16); TCP
	// (Kestrel, the token) is what the client tests use. A server given by PCIEEMU_TEST_TARGET
	// without PCIEEMU_TEST_UNIX is run over its TCP target.
	if testUnix != "" {
		runCases(t, testUnix, "", core)
	} else {
		runCases(t, testTCP, testTokenFile, core)
	}
}

// The virtio-net suite (tests/Conformance/virtio-net) against a server this test starts with its
// machine. Skipped when PCIEEMU_CONFORMANCE_CASES points TestConformanceCoreSubset at a directory.
func TestConformanceVirtioNet(t *testing.T) {
	if os.Getenv("PCIEEMU_CONFORMANCE_CASES") != "" {
		t.Skip("PCIEEMU_CONFORMANCE_CASES is set: TestConformanceCoreSubset runs that directory")
	}
	cases := loadCases(t, conformanceDir("virtio-net/cases"))
	core := coreSubset(cases)
	if len(core) < 18 {
		t.Fatalf("only %d of %d virtio-net cases are in the core subset", len(core), len(cases))
	}
	s, err := startServer("--machine", conformanceDir("virtio-net/machine.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	runCases(t, s.unix, "", core)   // the Unix socket: the direct loop, as above
}

// A "wait" step lets the time pass (the checker, on the machine clock, sees the 100 ms) and
// refuses a pause outside 1..maxWaitMs as bad case data.
func TestConformanceWaitStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialTest(ctx, testTCP)
	must(t, err)
	defer c.Close()
	r := &confRunner{c: c, ctx: ctx, env: map[string]uint64{}}
	start := time.Now()
	must(t, r.step(confStep{"op": "wait", "ms": float64(100)}))
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("wait 100 ms returned after %s", d)
	}
	for _, bad := range []confStep{{"op": "wait", "ms": float64(0)}, {"op": "wait", "ms": "20000"}, {"op": "wait"}} {
		if err := r.step(bad); err == nil || !strings.Contains(err.Error(), "'ms'") {
			t.Fatalf("%v: want an error naming 'ms', got %v", bad, err)
		}
	}
}
