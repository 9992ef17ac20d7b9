package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// processCPU returns the user plus system CPU time a process has used so
// far, from /proc/<pid>/stat (fields 14 and 15). The command name (field 2)
// may hold spaces and parentheses, so fields are counted after its last ')'.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime or stime is not a number", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// selfCPU is this process's user plus system CPU time (the load generator,
// and for raw token runs the token, which runs in this process).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU a measurement cost, in this process and in the
// server process (pid 0: none).
type cpuMeter struct {
	pid          int
	self, server time.Duration
}

func startCPU(pid int) cpuMeter {
	m := cpuMeter{pid: pid, self: selfCPU()}
	if pid > 0 {
		m.server, _ = processCPU(pid)
	}
	return m
}

// stop returns the CPU used since start by this process and by the server
// (-1 when there is none or it cannot be read).
func (m cpuMeter) stop() (self, server time.Duration) {
	self = selfCPU() - m.self
	server = -1
	if m.pid > 0 {
		if s, err := processCPU(m.pid); err == nil {
			server = s - m.server
		}
	}
	return self, server
}
