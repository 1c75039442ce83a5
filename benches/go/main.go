// Command cgo-bench measures a cgo call of a trivial C function (pf_add, a + b) and a C -> Go
// callback round trip, for comparison with pagurus's foreign-call modes (benches/ffi.rs).
//
// `cargo xtask bench` builds and runs it when a Go toolchain is on PATH, and reads its output:
// one `name value` pair per line, values in nanoseconds per call (medians over rounds, with the
// fastest and slowest round), plus the Go version.
//
// Usage: go run . [-n calls per round] [-rounds rounds]
package main

// #include <stdint.h>
import "C"

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"
)

//export goDouble
func goDouble(x C.int64_t) C.int64_t {
	return x * 2
}

// goAdd is a plain Go call, kept out of line: Go's own baseline.
//
//go:noinline
func goAdd(a, b int64) int64 {
	return a + b
}

// sink keeps the results alive so that no loop is optimised away.
var sink int64

func goCallLoop(n int) {
	var s int64
	for i := 0; i < n; i++ {
		s += goAdd(int64(i), 1)
	}
	sink += s
}

func cgoCallLoop(n int) {
	var s int64
	for i := 0; i < n; i++ {
		s += cAdd(int64(i), 1)
	}
	sink += s
}

func cgoCallbackLoop(n int) {
	var s int64
	for i := 0; i < n; i++ {
		s += cCallback(int64(i))
	}
	sink += s
}

// measure runs body(n) once to warm up, then `rounds` times, and returns the median, fastest and
// slowest round in nanoseconds per call.
func measure(rounds, n int, body func(int)) (median, fastest, slowest float64) {
	body(n/10 + 1)
	perCall := make([]float64, rounds)
	for r := range perCall {
		start := time.Now()
		body(n)
		perCall[r] = float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	sort.Float64s(perCall)
	return perCall[rounds/2], perCall[0], perCall[rounds-1]
}

func report(name string, rounds, n int, body func(int)) {
	median, fastest, slowest := measure(rounds, n, body)
	fmt.Printf("%s %.3f\n", name, median)
	fmt.Printf("%s_min %.3f\n", name, fastest)
	fmt.Printf("%s_max %.3f\n", name, slowest)
}

func main() {
	n := flag.Int("n", 1000000, "calls per round")
	rounds := flag.Int("rounds", 21, "rounds (the median round is reported)")
	flag.Parse()
	if *n <= 0 || *rounds <= 0 {
		fmt.Fprintln(os.Stderr, "cgo-bench: -n and -rounds must be positive")
		os.Exit(2)
	}
	// Check the C functions compute what the Rust fixtures do.
	if cAdd(40, 2) != 42 || cCallback(20) != 41 {
		fmt.Fprintln(os.Stderr, "cgo-bench: pf_add or pf_callback returned a wrong result")
		os.Exit(1)
	}
	fmt.Printf("go_version %s\n", runtime.Version())
	fmt.Printf("rounds %d\n", *rounds)
	fmt.Printf("calls_per_round %d\n", *n)
	report("go_call_ns", *rounds, *n, goCallLoop)
	report("cgo_call_ns", *rounds, *n, cgoCallLoop)
	report("cgo_callback_ns", *rounds, *n, cgoCallbackLoop)
	if sink == 42 {
		fmt.Println("# unlikely sum")
	}
}
