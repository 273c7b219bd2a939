package testenv

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// CPU runs f on one locked OS thread and returns the CPU time (user +
// system) that thread spent in it. Tests of an algorithm's cost compare it
// with a bound: unlike wall time it does not grow when other processes
// load the machine, and unlike the process's CPU time it does not count
// the other goroutines of the test binary — parallel tests, agents other
// tests left running, the race detector's work for them — which under a
// loaded make test took a 0.1 s computation past a 0.5 s bound. f must do
// its work on the calling goroutine.
func CPU(tb testing.TB, f func()) time.Duration {
	tb.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU(tb)
	f()
	return threadCPU(tb) - start
}

func threadCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
