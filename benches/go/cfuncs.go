package main

/*
#include <stdint.h>

// pf_add and pf_callback mirror crates/ffi-fixtures/c/fixtures.c, which the Rust benchmarks
// (benches/ffi.rs) call: keep them the same.
static int64_t pf_add(int64_t a, int64_t b) { return a + b; }
static int64_t pf_callback(int64_t (*cb)(int64_t), int64_t x) { return cb(x) + 1; }

// Exported by main.go (a file with //export may only declare things in its preamble, so the
// definitions live here).
extern int64_t goDouble(int64_t x);

// One cgo call of pf_callback with a Go callback: Go -> C -> Go -> C -> Go, the round trip that
// benches/ffi.rs's callback_* figures measure.
static int64_t pf_callback_go(int64_t x) { return pf_callback(goDouble, x); }
*/
import "C"

// cAdd calls the C function pf_add through cgo.
func cAdd(a, b int64) int64 {
	return int64(C.pf_add(C.int64_t(a), C.int64_t(b)))
}

// cCallback calls pf_callback through cgo, which calls goDouble back.
func cCallback(x int64) int64 {
	return int64(C.pf_callback_go(C.int64_t(x)))
}
