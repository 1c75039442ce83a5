// Command idle-bench is Go's side of `cargo xtask bench idle` (examples/million.rs): N goroutines
// (default 1,000,000) each parked, in time.Sleep until a common deadline ("sleep") or receiving
// on a channel of its own ("chan"); prints what a parked goroutine costs (VmRSS + VmPTE delta per
// goroutine), the spawn-and-park time and the wake-and-join time, and checks every result.
//
// Usage: idle-bench [-n N] [-mode sleep|chan]
// Output: the same machine-readable line as the example:
//
//	idle n=N mode=M held=0 spawn_park_ns=.. wake_join_ns=.. bytes=.. maps=..
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func resident() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		panic(err)
	}
	var sum int64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmPTE:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			sum += kb * 1024
		}
	}
	return sum
}

func maps() int {
	b, _ := os.ReadFile("/proc/self/maps")
	return strings.Count(string(b), "\n")
}

func main() {
	n := flag.Int("n", 1_000_000, "goroutines")
	mode := flag.String("mode", "sleep", "sleep or chan")
	flag.Parse()
	base := resident()
	results := make([]int, *n)
	var chans []chan int
	if *mode == "chan" {
		chans = make([]chan int, *n)
		for i := range chans {
			chans[i] = make(chan int)
		}
	}
	var parked atomic.Int64
	var wg sync.WaitGroup
	wg.Add(*n)
	t0 := time.Now()
	deadline := t0.Add(5*time.Second + time.Duration(*n)*30*time.Microsecond)
	for i := 0; i < *n; i++ {
		go func(i int) {
			defer wg.Done()
			parked.Add(1)
			if chans != nil {
				results[i] = <-chans[i] * 2
			} else {
				time.Sleep(time.Until(deadline))
				results[i] = i * 2
			}
		}(i)
	}
	for parked.Load() < int64(*n) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // the last ones reach their park
	spawnPark := time.Since(t0)
	bytes := float64(resident()-base) / float64(*n)
	m := maps()
	var t1 time.Time
	if chans != nil {
		t1 = time.Now()
		for i, c := range chans {
			c <- i
		}
	} else {
		if time.Now().After(deadline) {
			panic("spawning took longer than the sleep")
		}
		time.Sleep(time.Until(deadline))
		t1 = deadline
	}
	wg.Wait()
	wakeJoin := time.Since(t1)
	for i, r := range results {
		if r != 2*i {
			panic(fmt.Sprintf("goroutine %d returned %d", i, r))
		}
	}
	fmt.Printf("idle n=%d mode=%s held=0 spawn_park_ns=%d wake_join_ns=%d bytes=%.0f maps=%d\n",
		*n, *mode, spawnPark.Nanoseconds(), wakeJoin.Nanoseconds(), bytes, m)
}
