package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// The crash loop's daemons are started by a spawner: a copy of the test
// binary, started before anything is mounted, that forks them on request.
// The test process cannot fork them itself while its workload holds files
// open on the mount: a fork duplicates those descriptors and the child's
// execve closes them, and each such close is a FUSE FLUSH, which the
// client holds (as it should) while an OST it must write to is down. A
// restart of that OST from the test process would then wait for the
// client's recovery timeout, for a flush that waits for the OST.

// spawnerEnv, when set, makes the test binary a spawner (see init).
const spawnerEnv = "STRATA_TEST_SPAWNER"

func init() {
	if os.Getenv(spawnerEnv) != "" {
		os.Exit(runSpawner(os.Stdin, os.Stdout))
	}
}

// spawnReq asks the spawner to start Args with its output appended to Log.
type spawnReq struct {
	ID   int      `json:"id"`
	Args []string `json:"args"`
	Log  string   `json:"log"`
}

// spawnMsg is the spawner's answer to request ID (a pid or an error), or
// the news that process Exited has ended with Status.
type spawnMsg struct {
	ID     int    `json:"id,omitempty"`
	PID    int    `json:"pid,omitempty"`
	Err    string `json:"err,omitempty"`
	Exited int    `json:"exited,omitempty"`
	Status string `json:"status,omitempty"`
}

// runSpawner serves requests from in until it closes. Every child gets a
// process group of its own and SIGKILL when the spawner dies (which it does
// when the test binary dies).
func runSpawner(in io.Reader, out io.Writer) int {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m spawnMsg) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r spawnReq
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || len(r.Args) == 0 {
			send(spawnMsg{ID: r.ID, Err: fmt.Sprintf("bad request %q: %v", sc.Text(), err)})
			continue
		}
		logf, err := os.OpenFile(r.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			send(spawnMsg{ID: r.ID, Err: err.Error()})
			continue
		}
		cmd := exec.Command(r.Args[0], r.Args[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			send(spawnMsg{ID: r.ID, Err: err.Error()})
			continue
		}
		// The pid goes out before the exit can: the test registers it first.
		send(spawnMsg{ID: r.ID, PID: cmd.Process.Pid})
		go func() {
			_ = cmd.Wait()
			logf.Close()
			send(spawnMsg{Exited: cmd.Process.Pid, Status: cmd.ProcessState.String()})
		}()
	}
	return 0
}

// spawner is the test's side of a running spawner.
type spawner struct {
	cmd *exec.Cmd
	in  io.WriteCloser

	mu      sync.Mutex
	nextID  int
	replies map[int]chan spawnReply
	procs   map[int]*spawnedProc
	dead    chan struct{} // closed when the spawner's output ends
}

// spawnReply is the answer to a start: the process, or an error.
type spawnReply struct {
	proc *spawnedProc
	err  string
}

// spawnedProc is a process the spawner started.
type spawnedProc struct {
	pid    int
	done   chan struct{} // closed once it has been reaped
	status string        // how it ended, once done is closed
}

// startSpawner starts the test binary as a spawner.
func startSpawner() (*spawner, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &spawner{replies: map[int]chan spawnReply{}, procs: map[int]*spawnedProc{}, dead: make(chan struct{})}
	s.cmd = exec.Command(self)
	s.cmd.Env = append(os.Environ(), spawnerEnv+"=1")
	s.cmd.Stderr = os.Stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go s.read(out)
	return s, nil
}

// read dispatches the spawner's messages.
func (s *spawner) read(out io.Reader) {
	defer close(s.dead)
	dec := json.NewDecoder(out)
	for {
		var m spawnMsg
		if err := dec.Decode(&m); err != nil {
			return
		}
		s.mu.Lock()
		if m.Exited != 0 {
			if p := s.procs[m.Exited]; p != nil {
				p.status = m.Status
				close(p.done)
				delete(s.procs, m.Exited)
			}
		} else if ch := s.replies[m.ID]; ch != nil {
			r := spawnReply{err: m.Err}
			if m.PID != 0 {
				r.proc = &spawnedProc{pid: m.PID, done: make(chan struct{})}
				s.procs[m.PID] = r.proc
			}
			delete(s.replies, m.ID)
			ch <- r
		}
		s.mu.Unlock()
	}
}

// start runs args (a path and its arguments) with its output appended to
// logPath.
func (s *spawner) start(args []string, logPath string) (*spawnedProc, error) {
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	ch := make(chan spawnReply, 1)
	s.replies[id] = ch
	s.mu.Unlock()
	b, err := json.Marshal(spawnReq{ID: id, Args: args, Log: logPath})
	if err != nil {
		return nil, err
	}
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("spawner: %w", err)
	}
	select {
	case r := <-ch:
		if r.err != "" {
			return nil, fmt.Errorf("spawner: start %s: %s", args[0], r.err)
		}
		return r.proc, nil
	case <-s.dead:
		return nil, fmt.Errorf("spawner exited (%v)", s.cmd.ProcessState)
	}
}

// close ends the spawner once the processes it started are gone.
func (s *spawner) close() {
	s.in.Close()
	<-s.dead
	_ = s.cmd.Wait()
}
