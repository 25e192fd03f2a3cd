// Command benchratio reads `go test -bench` output on stdin and prints each
// benchmark beside its physical floor: in every package, the benchmarks
// named BenchmarkFloor* measure one checksum pass plus one copy over the
// same bytes, and every other benchmark is compared with the floor that
// moves the same number of bytes per operation (b.SetBytes) in the same run.
// Figures are medians over -count runs; the ratio (ns/op ÷ floor ns/op) is
// what to quote, since absolute times on shared machines drift.
//
// Usage: go test -run='^$' -bench=. -count=5 ./segment/ ./coalesce/ | go run ./scripts/benchratio
package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

type bench struct {
	pkg, name string
	nsop      []float64
	bytesOp   float64
	extra     map[string][]float64 // custom metrics, e.g. pkts/s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func main() {
	var order []*bench
	byKey := map[string]*bench{}
	pkg := ""
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pkg: ") {
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // strip -GOMAXPROCS
		}
		key := pkg + " " + name
		b := byKey[key]
		if b == nil {
			b = &bench{pkg: pkg, name: name, extra: map[string][]float64{}}
			byKey[key] = b
			order = append(order, b)
		}
		var ns, mbs float64
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch unit := f[i+1]; unit {
			case "ns/op":
				ns = v
			case "MB/s":
				mbs = v
			case "B/op", "allocs/op":
				b.extra[unit] = append(b.extra[unit], v)
			default:
				b.extra[unit] = append(b.extra[unit], v)
			}
		}
		if ns > 0 {
			b.nsop = append(b.nsop, ns)
			if mbs > 0 {
				b.bytesOp = mbs * ns / 1e3
			}
		}
	}
	if len(order) == 0 {
		fmt.Fprintln(os.Stderr, "benchratio: no benchmark lines on stdin")
		os.Exit(1)
	}
	fmt.Printf("%-44s %12s %10s %12s %8s  %s\n", "benchmark (median)", "ns/op", "Gbit/s", "floor ns/op", "×floor", "other")
	for _, b := range order {
		ns := median(b.nsop)
		gbps := ""
		if b.bytesOp > 0 {
			gbps = fmt.Sprintf("%.1f", b.bytesOp*8/ns)
		}
		floorNs, ratio := "", ""
		if !strings.HasPrefix(b.name, "BenchmarkFloor") && b.bytesOp > 0 {
			var best *bench
			for _, c := range order {
				if c.pkg != b.pkg || !strings.HasPrefix(c.name, "BenchmarkFloor") || c.bytesOp == 0 {
					continue
				}
				if best == nil || math.Abs(math.Log(c.bytesOp/b.bytesOp)) < math.Abs(math.Log(best.bytesOp/b.bytesOp)) {
					best = c
				}
			}
			if best != nil {
				// Scale the floor to this benchmark's bytes per op.
				fl := median(best.nsop) * b.bytesOp / best.bytesOp
				floorNs = fmt.Sprintf("%.0f", fl)
				ratio = fmt.Sprintf("%.2f", ns/fl)
			}
		}
		var other []string
		keys := make([]string, 0, len(b.extra))
		for k := range b.extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			other = append(other, fmt.Sprintf("%.4g %s", median(b.extra[k]), k))
		}
		short := strings.TrimPrefix(b.pkg, "vnic/") + "." + strings.TrimPrefix(b.name, "Benchmark")
		fmt.Printf("%-44s %12.0f %10s %12s %8s  %s\n", short, ns, gbps, floorNs, ratio, strings.Join(other, ", "))
	}
}
