package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuSplit is the CPU, in cores, each party used during a load step: the load
// generator (this process), the server under test, and PostgreSQL (the
// postmaster and all its backends). On 2 shared cores it says which of them
// is the bound.
type cpuSplit struct {
	LoadGen, Server, Postgres float64
}

type cpuMeter struct {
	server int
	pgDir  string
	t0     time.Time
	ticks  [3]int64
}

// postgresPids returns the postmaster of the cluster in dir and its children.
func postgresPids(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")) // hack/ensure-postgres.sh layout
	if err != nil {
		return nil
	}
	master, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return nil
	}
	pids := []int{master}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+2:])
		if ppid, _ := strconv.Atoi(f[1]); ppid == master {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (m *cpuMeter) read() [3]int64 {
	var t [3]int64
	t[0], _ = cpuTicks(os.Getpid())
	t[1], _ = cpuTicks(m.server)
	for _, pid := range postgresPids(m.pgDir) {
		n, _ := cpuTicks(pid)
		t[2] += n
	}
	return t
}

func (m *cpuMeter) start() { m.t0, m.ticks = time.Now(), m.read() }

func (m *cpuMeter) stop() cpuSplit {
	t, secs := m.read(), time.Since(m.t0).Seconds()
	cores := func(i int) float64 { return float64(t[i]-m.ticks[i]) / 100 / secs } // ticks are 1/100 s
	return cpuSplit{LoadGen: cores(0), Server: cores(1), Postgres: cores(2)}
}
