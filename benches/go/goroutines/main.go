// Command goroutine-bench measures Go's runtime at what pagurus's criterion benchmarks measure,
// for the side-by-side table of `cargo xtask bench`:
//
//	spawn    goroutine spawn + run + wait (a WaitGroup per goroutine), GOMAXPROCS=1 and 2
//	         (benches/sched.rs spawn_join_{1,2}_workers)
//	gosched  runtime.Gosched, one goroutine, GOMAXPROCS=1 (sched/yield_now)
//	pingpong unbuffered-channel round trip between two goroutines, GOMAXPROCS=1 and 2
//	         (channel/pingpong_1_worker, channel/pingpong_2_workers)
//	buffered make(chan int, 1024), one producer and one consumer goroutine, ns per message,
//	         GOMAXPROCS=2 (channel/bounded_1024_spsc)
//	mutex    sync.Mutex Lock + Unlock, uncontended (sync/mutex_uncontended)
//	sleep    10,000 goroutines each doing time.Sleep(1ms) ten times: wall time of the whole run,
//	         and CPU time (getrusage user + sys, whole process) per sleep (benches/time.rs)
//	growth1m, growth16m
//	         a recursion of frames holding an 88-byte node that points at the caller's node,
//	         down to 1 MiB (16 MiB) of frames, as benches/growth.rs's chain_*: "fresh" starts a
//	         new goroutine (a 2 KiB stack) per iteration and times its recursion (stack growth
//	         included); "steady" repeats the recursion in one goroutine whose stack has grown
//	         already (pagurus's chain_*_pregrown)
//
// Output: one `name value` pair per line; values in nanoseconds per operation (the median
// round, with `name_min` and `name_max` for the fastest and slowest round, `name_n` for the
// operations per round and `name_rounds` for the rounds), plus `go_version`.
//
// Go 1.19+ starts goroutines on a stack sized from the average seen at the last GC
// (GODEBUG adaptivestackstart); for the growth rows to measure growth from 2 KiB, the program
// re-executes itself with adaptivestackstart=0 unless GODEBUG already says so.
//
// Usage: goroutine-bench [-rounds N] [-quick] [-bench spawn,gosched,...]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// sink keeps results alive so that no loop is optimised away.
var sink uint64

// measure runs body(n) once to warm up, then `rounds` times, and prints the median, fastest and
// slowest round in ns per operation; body returns the nanoseconds it measured for n operations.
func measure(name string, rounds, n int, body func(n int) float64) {
	body(n/10 + 1)
	per := make([]float64, rounds)
	for r := range per {
		per[r] = body(n) / float64(n)
	}
	emit(name, n, per)
}

// emit prints the median, fastest and slowest of per-round figures.
func emit(name string, n int, per []float64) {
	sort.Float64s(per)
	fmt.Printf("%s %.3f\n", name, per[len(per)/2])
	fmt.Printf("%s_min %.3f\n", name, per[0])
	fmt.Printf("%s_max %.3f\n", name, per[len(per)-1])
	fmt.Printf("%s_n %d\n", name, n)
	fmt.Printf("%s_rounds %d\n", name, len(per))
}

// timed returns the nanoseconds f takes.
func timed(f func()) float64 {
	start := time.Now()
	f()
	return float64(time.Since(start).Nanoseconds())
}

// withProcs runs f with GOMAXPROCS set to procs, restoring it after.
func withProcs(procs int, f func()) {
	old := runtime.GOMAXPROCS(procs)
	defer runtime.GOMAXPROCS(old)
	f()
}

func spawnWait(n int) float64 {
	return timed(func() {
		for i := 0; i < n; i++ {
			var wg sync.WaitGroup
			wg.Add(1)
			v := uint64(i)
			go func() {
				sink += v
				wg.Done()
			}()
			wg.Wait()
		}
	})
}

func gosched(n int) float64 {
	return timed(func() {
		for i := 0; i < n; i++ {
			runtime.Gosched()
		}
	})
}

// pingPong: n round trips of a value over two unbuffered channels.
func pingPong(n int) float64 {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	ns := timed(func() {
		v := 0
		for i := 0; i < n; i++ {
			ping <- v
			v = <-pong
		}
		sink += uint64(v)
	})
	close(ping)
	<-pong
	return ns
}

// buffered: n messages from a producer goroutine to this one over make(chan int, 1024).
func buffered(n int) float64 {
	ch := make(chan int, 1024)
	return timed(func() {
		go func() {
			for i := 0; i < n; i++ {
				ch <- i
			}
			close(ch)
		}()
		var s uint64
		for v := range ch {
			s += uint64(v)
		}
		sink += s
	})
}

var mu sync.Mutex
var guarded uint64

func mutex(n int) float64 {
	return timed(func() {
		for i := 0; i < n; i++ {
			mu.Lock()
			guarded++
			mu.Unlock()
		}
	})
}

// cpuNs is the process's user + system CPU time so far, in ns.
func cpuNs() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return float64(ru.Utime.Nano() + ru.Stime.Nano())
}

const sleepers, sleepsEach = 10000, 10

// sleepFanOut runs the fan-out once and returns its wall time and CPU time per sleep, in ns.
func sleepFanOut() (wall, cpuPerSleep float64) {
	cpu0 := cpuNs()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(sleepers)
	for i := 0; i < sleepers; i++ {
		go func() {
			for j := 0; j < sleepsEach; j++ {
				time.Sleep(time.Millisecond)
			}
			wg.Done()
		}()
	}
	wg.Wait()
	wall = float64(time.Since(start).Nanoseconds())
	return wall, (cpuNs() - cpu0) / (sleepers * sleepsEach)
}

// node is 88 bytes, like benches/growth.rs's Node: ten words of payload and the caller's node.
type node struct {
	payload [10]uint64
	prev    *node
}

// chain recurses depth frames, each holding a node that points at its caller's, and at the
// bottom walks the whole chain back up (every link was moved by the growth).
//
//go:noinline
func chain(depth uint32, prev *node) uint64 {
	n := node{prev: prev}
	for i := range n.payload {
		n.payload[i] = uint64(depth)
	}
	if depth == 0 {
		if prev != nil {
			frameBytes = uintptr(unsafe.Pointer(prev)) - uintptr(unsafe.Pointer(&n))
		}
		var sum uint64
		for cur := &n; cur != nil; cur = cur.prev {
			sum += cur.payload[9]
		}
		return sum
	}
	return chain(depth-1, &n)
}

// frameBytes is the stack one level of chain takes, as the last chain's bottom frame saw it
// (the distance between its node and its caller's).
var frameBytes uintptr

// growthFresh: each of n iterations starts a goroutine (2 KiB stack) and times its recursion.
func growthFresh(depth uint32, n int) float64 {
	var total float64
	for i := 0; i < n; i++ {
		done := make(chan float64)
		go func() {
			var s uint64
			ns := timed(func() { s = chain(depth, nil) })
			sink += s
			done <- ns
		}()
		total += <-done
	}
	return total
}

// growthSteady: one goroutine grows its stack once, then times n more recursions.
func growthSteady(depth uint32, n int) float64 {
	done := make(chan float64)
	go func() {
		sink += chain(depth, nil)
		var s uint64
		ns := timed(func() {
			for i := 0; i < n; i++ {
				s += chain(depth, nil)
			}
		})
		sink += s
		done <- ns
	}()
	return <-done
}

func main() {
	rounds := flag.Int("rounds", 21, "rounds (the median round is reported)")
	quick := flag.Bool("quick", false, "fewer operations per round (a smoke test)")
	only := flag.String("bench", "spawn,gosched,pingpong,buffered,mutex,sleep,growth1m,growth16m",
		"comma-separated benchmarks to run")
	flag.Parse()
	if *rounds <= 0 {
		fmt.Fprintln(os.Stderr, "goroutine-bench: -rounds must be positive")
		os.Exit(2)
	}
	reexecWithoutAdaptiveStacks()
	wanted := map[string]bool{}
	for _, b := range strings.Split(*only, ",") {
		switch b = strings.TrimSpace(b); b {
		case "spawn", "gosched", "pingpong", "buffered", "mutex", "sleep", "growth1m", "growth16m":
			wanted[b] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "goroutine-bench: unknown benchmark %q\n", b)
			os.Exit(2)
		}
	}
	scale := 1
	if *quick {
		scale = 10
	}
	fmt.Printf("go_version %s\n", runtime.Version())
	fmt.Printf("rounds %d\n", *rounds)
	fmt.Printf("cpus %d\n", runtime.NumCPU())
	procs := runtime.GOMAXPROCS(0)

	if wanted["spawn"] {
		withProcs(1, func() { measure("spawn_wait_1p_ns", *rounds, 200000/scale, spawnWait) })
		withProcs(2, func() { measure("spawn_wait_2p_ns", *rounds, 200000/scale, spawnWait) })
	}
	if wanted["gosched"] {
		withProcs(1, func() { measure("gosched_ns", *rounds, 1000000/scale, gosched) })
	}
	if wanted["pingpong"] {
		withProcs(1, func() { measure("chan_pingpong_1p_ns", *rounds, 200000/scale, pingPong) })
		withProcs(2, func() { measure("chan_pingpong_2p_ns", *rounds, 200000/scale, pingPong) })
	}
	if wanted["buffered"] {
		withProcs(2, func() { measure("chan_buffered_1024_ns", *rounds, 1000000/scale, buffered) })
	}
	if wanted["mutex"] {
		measure("mutex_uncontended_ns", *rounds, 10000000/scale, mutex)
	}
	if wanted["sleep"] {
		// Whole runs of about 10 ms each: fewer rounds than the rest, at least 5.
		r := *rounds/2 + 1
		if r < 5 {
			r = 5
		}
		sleepFanOut() // warm-up: goroutine stacks and timers allocated once
		walls, cpus := make([]float64, r), make([]float64, r)
		for i := range walls {
			walls[i], cpus[i] = sleepFanOut()
		}
		emit("sleep_fanout_wall_ns", 1, walls)
		emit("sleep_cpu_per_sleep_ns", sleepers*sleepsEach, cpus)
		fmt.Printf("sleep_gomaxprocs %d\n", procs)
	}
	sink += chain(1, nil)
	frame := frameBytes
	if wanted["growth1m"] || wanted["growth16m"] {
		fmt.Printf("growth_frame_bytes %d\n", frame)
	}
	for _, g := range []struct {
		key, name string
		bytes     uintptr
		n         int
	}{{"growth1m", "growth_1m", 1 << 20, 20}, {"growth16m", "growth_16m", 16 << 20, 4}} {
		if !wanted[g.key] {
			continue
		}
		depth := uint32(g.bytes / frame)
		n := g.n
		if *quick {
			n = (n + 3) / 4
		}
		withProcs(1, func() {
			measure(g.name+"_fresh_ns", *rounds, n, func(n int) float64 { return growthFresh(depth, n) })
			measure(g.name+"_steady_ns", *rounds, n, func(n int) float64 { return growthSteady(depth, n) })
		})
	}
	if sink == 42 {
		fmt.Println("# unlikely sum")
	}
}

// reexecWithoutAdaptiveStacks re-executes the program with GODEBUG=adaptivestackstart=0 added,
// unless it is there already, so that every goroutine starts on Go's minimal (2 KiB) stack.
func reexecWithoutAdaptiveStacks() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "adaptivestackstart=") {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	godebug += "adaptivestackstart=0"
	exe, err := os.Executable()
	if err == nil {
		os.Setenv("GODEBUG", godebug)
		err = syscall.Exec(exe, os.Args, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "goroutine-bench: cannot re-execute with GODEBUG=%s: %v\n", godebug, err)
	os.Exit(1)
}
