//go:build rdma && cgo

package rdma

/*
#cgo LDFLAGS: -libverbs -lrdmacm
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

// strata_devices writes up to max device names, 64 bytes each, into names
// and returns how many, or minus an errno.
static int strata_devices(char *names, int max) {
	int n = 0;
	errno = 0;
	struct ibv_device **list = ibv_get_device_list(&n);
	if (list == NULL) return -(errno ? errno : ENOSYS);
	int k = 0;
	for (; k < n && k < max; k++) {
		strncpy(names + 64*k, ibv_get_device_name(list[k]), 63);
		names[64*k + 63] = 0;
	}
	ibv_free_device_list(list);
	return k;
}

// strata_sockaddr fills ss with ip and port.
static int strata_sockaddr(const char *ip, int port, struct sockaddr_storage *ss) {
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		return 0;
	}
	return EINVAL;
}

// strata_addr_string writes a socket address as text and returns its port.
static int strata_addr_string(struct sockaddr *sa, char *buf, int len) {
	buf[0] = 0;
	if (sa == NULL) return 0;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in4->sin_addr, buf, len);
		return ntohs(in4->sin_port);
	}
	if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, len);
		return ntohs(in6->sin6_port);
	}
	return 0;
}

// strata_get_event takes the next event of a channel without blocking:
// 0, or an errno (EAGAIN: none yet).
static int strata_get_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev) {
	return rdma_get_cm_event(ch, ev) ? errno : 0;
}

static int strata_event_type(struct rdma_cm_event *ev) { return ev->event; }
static int strata_event_status(struct rdma_cm_event *ev) { return ev->status; }
static struct rdma_cm_id *strata_event_id(struct rdma_cm_event *ev) { return ev->id; }
static int strata_event_initiator(struct rdma_cm_event *ev) { return ev->param.conn.initiator_depth; }
static int strata_event_responder(struct rdma_cm_event *ev) { return ev->param.conn.responder_resources; }

// strata_device_reads returns the device's limits on RDMA READs a queue
// pair may start (init) and serve (resp).
static int strata_device_reads(struct rdma_cm_id *id, int *init, int *resp) {
	struct ibv_device_attr a;
	int r = ibv_query_device(id->verbs, &a);
	if (r) return r;
	*init = a.max_qp_init_rd_atom;
	*resp = a.max_qp_rd_atom;
	return 0;
}

// strata_connect and strata_accept set the RDMA READ depths, and retry
// without end on RNR as the fake does (rnr_retry 7).
static int strata_connect(struct rdma_cm_id *id, int initiator, int responder) {
	struct rdma_conn_param p;
	memset(&p, 0, sizeof p);
	p.initiator_depth = initiator;
	p.responder_resources = responder;
	p.retry_count = 7;
	p.rnr_retry_count = 7;
	return rdma_connect(id, &p) ? errno : 0;
}

static int strata_accept(struct rdma_cm_id *id, int initiator, int responder) {
	struct rdma_conn_param p;
	memset(&p, 0, sizeof p);
	p.initiator_depth = initiator;
	p.responder_resources = responder;
	p.rnr_retry_count = 7;
	return rdma_accept(id, &p) ? errno : 0;
}

static int strata_set_tos(struct rdma_cm_id *id, int tos) {
	uint8_t t = tos;
	return rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_TOS, &t, sizeof t) ? errno : 0;
}

static int strata_listen_port(struct rdma_cm_id *id) { return ntohs(rdma_get_src_port(id)); }

static const char *strata_device_name(struct rdma_cm_id *id) {
	return id->verbs ? ibv_get_device_name(id->verbs->device) : "";
}

static void strata_sgid(struct rdma_cm_id *id, uint8_t *out) {
	memcpy(out, id->route.addr.addr.ibaddr.sgid.raw, 16);
}

static struct ibv_mr *strata_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int remote_read, int remote_write) {
	int access = IBV_ACCESS_LOCAL_WRITE;
	if (remote_read) access |= IBV_ACCESS_REMOTE_READ;
	if (remote_write) access |= IBV_ACCESS_REMOTE_WRITE;
	return ibv_reg_mr(pd, addr, len, access);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Native returns the verbs over libibverbs and librdmacm.
func Native() Verbs { return nativeVerbs{} }

// NativeBuilt reports whether this binary has the cgo verbs: it does.
func NativeBuilt() bool { return true }

// nativeVerbs is Verbs over libibverbs and librdmacm.
type nativeVerbs struct{}

var _ Verbs = nativeVerbs{}

// Devices lists the devices libibverbs finds. A kernel without RDMA makes
// ibv_get_device_list fail with ENOSYS: that is no device, not an error.
func (nativeVerbs) Devices() ([]string, error) {
	const max = 64
	names := make([]byte, 64*max)
	n := int(C.strata_devices((*C.char)(unsafe.Pointer(&names[0])), max))
	if n < 0 {
		switch errno := syscall.Errno(-n); errno {
		case syscall.ENOSYS, syscall.ENODEV, syscall.ENOENT:
			return nil, nil
		default:
			return nil, fmt.Errorf("rdma: list devices: %w", errno)
		}
	}
	var devs []string
	for i := range n {
		devs = append(devs, C.GoString((*C.char)(unsafe.Pointer(&names[64*i]))))
	}
	return devs, nil
}

// eventWaiter waits for rdma_cm events on a non-blocking channel.
type eventWaiter struct {
	ch *C.struct_rdma_event_channel
}

// newEventChannel creates a non-blocking rdma_cm event channel.
func newEventChannel() (*C.struct_rdma_event_channel, error) {
	ch, err := C.rdma_create_event_channel()
	if ch == nil {
		return nil, fmt.Errorf("rdma: create event channel: %w", err)
	}
	if err := unix.SetNonblock(int(ch.fd), true); err != nil {
		C.rdma_destroy_event_channel(ch)
		return nil, fmt.Errorf("rdma: event channel: %w", err)
	}
	return ch, nil
}

// cmEvent is what the code needs of an rdma_cm event, copied out before
// the event is acknowledged.
type cmEvent struct {
	typ       C.int
	status    int
	id        *C.struct_rdma_cm_id
	initiator int
	responder int
}

// next returns the next event, waiting until one comes, ctx ends or wake
// (a file descriptor, or -1) becomes readable.
func (w eventWaiter) next(ctx context.Context, wake int) (cmEvent, error) {
	for {
		ev, ok, err := takeEvent(w.ch)
		if err != nil || ok {
			return ev, err
		}
		fds := []int{int(w.ch.fd)}
		if wake >= 0 {
			fds = append(fds, wake)
		}
		ready, err := waitFDs(ctx, fds...)
		if err != nil {
			return cmEvent{}, err
		}
		if wake >= 0 && ready[1] {
			return cmEvent{}, ErrClosed
		}
	}
}

// takeEvent takes the next event of a channel, if there is one, without
// blocking, and acknowledges it.
func takeEvent(ch *C.struct_rdma_event_channel) (cmEvent, bool, error) {
	var ev *C.struct_rdma_cm_event
	if e := C.strata_get_event(ch, &ev); e != 0 {
		if syscall.Errno(e) == syscall.EAGAIN || syscall.Errno(e) == syscall.EINTR {
			return cmEvent{}, false, nil
		}
		return cmEvent{}, false, fmt.Errorf("rdma: get event: %w", syscall.Errno(e))
	}
	out := cmEvent{
		typ:       C.strata_event_type(ev),
		status:    int(C.strata_event_status(ev)),
		id:        C.strata_event_id(ev),
		initiator: int(C.strata_event_initiator(ev)),
		responder: int(C.strata_event_responder(ev)),
	}
	C.rdma_ack_cm_event(ev)
	return out, true, nil
}

// endsConnection reports whether the event means the connection is gone.
func (ev cmEvent) endsConnection() bool {
	switch ev.typ {
	case C.RDMA_CM_EVENT_DISCONNECTED, C.RDMA_CM_EVENT_DEVICE_REMOVAL, C.RDMA_CM_EVENT_TIMEWAIT_EXIT:
		return true
	}
	return false
}

// deviceName returns the name of the device an id is bound to.
func deviceName(id *C.struct_rdma_cm_id) string { return C.GoString(C.strata_device_name(id)) }

// sourceGID returns the GID an id sends from.
func sourceGID(id *C.struct_rdma_cm_id) net.IP {
	gid := make(net.IP, 16)
	C.strata_sgid(id, (*C.uint8_t)(unsafe.Pointer(&gid[0])))
	return gid
}

// deviceReads returns the RDMA READ depths the id's device allows: as the
// initiator and as the responder.
func deviceReads(id *C.struct_rdma_cm_id) (int, int, error) {
	var init, resp C.int
	if e := C.strata_device_reads(id, &init, &resp); e != 0 {
		return 0, 0, fmt.Errorf("query device: %w", syscall.Errno(e))
	}
	return int(init), int(resp), nil
}

// expect waits for an event of type want; any other type fails with what
// it says.
func (w eventWaiter) expect(ctx context.Context, want C.int, what string) (cmEvent, error) {
	ev, err := w.next(ctx, -1)
	if err != nil {
		return ev, fmt.Errorf("rdma: %s: %w", what, err)
	}
	if ev.typ != want {
		return ev, fmt.Errorf("rdma: %s: %s", what, eventText(ev))
	}
	return ev, nil
}

// eventText describes an unexpected rdma_cm event.
func eventText(ev cmEvent) string {
	switch ev.typ {
	case C.RDMA_CM_EVENT_REJECTED:
		return "connection refused"
	case C.RDMA_CM_EVENT_UNREACHABLE:
		return "peer unreachable"
	case C.RDMA_CM_EVENT_ADDR_ERROR:
		return "cannot resolve the address to an RDMA device"
	case C.RDMA_CM_EVENT_ROUTE_ERROR:
		return "no route"
	case C.RDMA_CM_EVENT_CONNECT_ERROR:
		return "connection error"
	}
	msg := C.GoString(C.rdma_event_str(C.enum_rdma_cm_event_type(ev.typ)))
	if ev.status != 0 {
		msg += fmt.Sprintf(" (status %d)", ev.status)
	}
	return msg
}

// waitFDs waits until one of fds is readable or ctx ends, without
// spinning: poll(2) on fds and on an eventfd that ctx's end writes to.
func waitFDs(ctx context.Context, fds ...int) ([]bool, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("rdma: eventfd: %w", err)
	}
	defer unix.Close(efd)
	return waitFDsWith(ctx, efd, fds...)
}

// waitFDsWith is waitFDs with a caller's eventfd for ctx's end, which must
// stay open until it returns.
func waitFDsWith(ctx context.Context, efd int, fds ...int) ([]bool, error) {
	woke := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woke)
		_, _ = unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	})
	defer func() {
		if !stop() {
			<-woke // the write must not outlive the caller's descriptor
		}
	}()
	pfds := make([]unix.PollFd, len(fds)+1)
	for i, fd := range fds {
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	pfds[len(fds)] = unix.PollFd{Fd: int32(efd), Events: unix.POLLIN}
	for {
		_, err := unix.Poll(pfds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("rdma: poll: %w", err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ready := make([]bool, len(fds)+1)
		any := false
		for i := range pfds {
			ready[i] = pfds[i].Revents != 0
			any = any || ready[i]
		}
		if any {
			return ready[:len(fds)], nil
		}
	}
}

// sockaddr converts "ip:port" into a C socket address.
func sockaddr(addr string) (C.struct_sockaddr_storage, error) {
	var ss C.struct_sockaddr_storage
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ss, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return ss, fmt.Errorf("bad port %q", port)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return ss, fmt.Errorf("cannot resolve %q", host)
		}
		ip = ips[0]
	}
	cs := C.CString(ip.String())
	defer C.free(unsafe.Pointer(cs))
	if e := C.strata_sockaddr(cs, C.int(p), &ss); e != 0 {
		return ss, syscall.Errno(e)
	}
	return ss, nil
}

// addrString formats a C socket address as "ip:port".
func addrString(sa *C.struct_sockaddr) string {
	var buf [64]C.char
	port := C.strata_addr_string(sa, &buf[0], C.int(len(buf)))
	host := C.GoString(&buf[0])
	if host == "" {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// resolveTimeout is how long rdma_cm may take to resolve an address or a
// route, in milliseconds, within ctx's deadline.
func resolveTimeout(ctx context.Context) C.int {
	ms := 2000
	if d, ok := ctx.Deadline(); ok {
		ms = min(ms, max(100, int(time.Until(d)/time.Millisecond)))
	}
	return C.int(ms)
}

// Dial connects to addr: it resolves the address and route through
// rdma_cm, creates the queue pair and connects.
func (nativeVerbs) Dial(ctx context.Context, addr string, cfg Config) (QueuePair, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fail := func(err error) (QueuePair, error) {
		return nil, fmt.Errorf("rdma: connect %s: %w", addr, err)
	}
	dst, err := sockaddr(addr)
	if err != nil {
		return fail(err)
	}
	var srcp *C.struct_sockaddr
	src, err := cfg.Source()
	if err != nil {
		return fail(err)
	}
	var srcs C.struct_sockaddr_storage
	if src != nil {
		if srcs, err = sockaddr(net.JoinHostPort(src.String(), "0")); err != nil {
			return fail(err)
		}
		srcp = (*C.struct_sockaddr)(unsafe.Pointer(&srcs))
	}
	ch, err := newEventChannel()
	if err != nil {
		return fail(err)
	}
	var id *C.struct_rdma_cm_id
	if r, err := C.rdma_create_id(ch, &id, nil, C.RDMA_PS_TCP); r != 0 {
		C.rdma_destroy_event_channel(ch)
		return fail(fmt.Errorf("create id: %w", err))
	}
	q := &nativeQP{cmCh: ch, id: id, wake: -1}
	w := eventWaiter{ch: ch}
	step := func() error {
		if r, err := C.rdma_resolve_addr(id, srcp, (*C.struct_sockaddr)(unsafe.Pointer(&dst)), resolveTimeout(ctx)); r != 0 {
			return fmt.Errorf("resolve address: %w", err)
		}
		if _, err := w.expect(ctx, C.RDMA_CM_EVENT_ADDR_RESOLVED, "resolve address"); err != nil {
			return err
		}
		if cfg.TOS > 0 {
			if e := C.strata_set_tos(id, C.int(cfg.TOS)); e != 0 {
				return fmt.Errorf("set type of service: %w", syscall.Errno(e))
			}
		}
		if r, err := C.rdma_resolve_route(id, resolveTimeout(ctx)); r != 0 {
			return fmt.Errorf("resolve route: %w", err)
		}
		if _, err := w.expect(ctx, C.RDMA_CM_EVENT_ROUTE_RESOLVED, "resolve route"); err != nil {
			return err
		}
		initiator, responder, err := q.setup(cfg, 0, 0)
		if err != nil {
			return err
		}
		if e := C.strata_connect(id, C.int(initiator), C.int(responder)); e != 0 {
			return fmt.Errorf("connect: %w", syscall.Errno(e))
		}
		_, err = w.expect(ctx, C.RDMA_CM_EVENT_ESTABLISHED, "connect")
		return err
	}
	if err := step(); err != nil {
		q.destroy()
		return fail(err)
	}
	q.finishSetup()
	return q, nil
}

// Listen binds an rdma_cm id to addr and listens on it.
func (nativeVerbs) Listen(addr string, cfg Config) (Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fail := func(err error) (Listener, error) {
		return nil, fmt.Errorf("rdma: listen %s: %w", addr, err)
	}
	sa, err := sockaddr(addr)
	if err != nil {
		return fail(err)
	}
	ch, err := newEventChannel()
	if err != nil {
		return fail(err)
	}
	var id *C.struct_rdma_cm_id
	if r, err := C.rdma_create_id(ch, &id, nil, C.RDMA_PS_TCP); r != 0 {
		C.rdma_destroy_event_channel(ch)
		return fail(fmt.Errorf("create id: %w", err))
	}
	if r, err := C.rdma_bind_addr(id, (*C.struct_sockaddr)(unsafe.Pointer(&sa))); r != 0 {
		C.rdma_destroy_id(id)
		C.rdma_destroy_event_channel(ch)
		return fail(fmt.Errorf("bind: %w", err))
	}
	if r, err := C.rdma_listen(id, 128); r != 0 {
		C.rdma_destroy_id(id)
		C.rdma_destroy_event_channel(ch)
		return fail(fmt.Errorf("listen: %w", err))
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		C.rdma_destroy_id(id)
		C.rdma_destroy_event_channel(ch)
		return fail(err)
	}
	host, _, _ := net.SplitHostPort(addr)
	port := int(C.strata_listen_port(id))
	return &nativeListener{ch: ch, id: id, cfg: cfg, wake: wake, addr: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

// nativeListener is a listening rdma_cm id.
type nativeListener struct {
	ch   *C.struct_rdma_event_channel
	id   *C.struct_rdma_cm_id
	cfg  Config
	wake int // written by Close to end Accept
	addr string

	mu        sync.Mutex
	closed    bool
	accepting sync.WaitGroup
}

var _ Listener = (*nativeListener)(nil)

// Addr returns the address the listener is bound to.
func (l *nativeListener) Addr() string { return l.addr }

// Accept waits for a connection request, creates its queue pair on the
// request's own event channel and accepts it.
func (l *nativeListener) Accept(ctx context.Context) (QueuePair, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	l.accepting.Add(1)
	l.mu.Unlock()
	defer l.accepting.Done()
	w := eventWaiter{ch: l.ch}
	for {
		ev, err := w.next(ctx, l.wake)
		if err != nil {
			return nil, err
		}
		if ev.typ != C.RDMA_CM_EVENT_CONNECT_REQUEST {
			continue
		}
		qp, err := l.accept(ev)
		if err != nil {
			return nil, fmt.Errorf("rdma: accept on %s: %w", l.addr, err)
		}
		return qp, nil
	}
}

// accept sets up and accepts the connection a request event announced;
// a request that cannot be set up is rejected.
func (l *nativeListener) accept(ev cmEvent) (QueuePair, error) {
	child := ev.id
	ch, err := newEventChannel()
	if err != nil {
		C.rdma_reject(child, nil, 0)
		C.rdma_destroy_id(child)
		return nil, err
	}
	// Its own channel: its later events (established, disconnected) must
	// not wait behind other requests on the listener's.
	if r, err := C.rdma_migrate_id(child, ch); r != 0 {
		C.rdma_reject(child, nil, 0)
		C.rdma_destroy_id(child)
		C.rdma_destroy_event_channel(ch)
		return nil, fmt.Errorf("migrate id: %w", err)
	}
	q := &nativeQP{cmCh: ch, id: child, wake: -1}
	// Start no more READs than the peer serves, serve no more than it starts.
	initiator, responder, err := q.setup(l.cfg, ev.responder, ev.initiator)
	if err == nil {
		if e := C.strata_accept(child, C.int(initiator), C.int(responder)); e != 0 {
			err = fmt.Errorf("accept: %w", syscall.Errno(e))
		}
	}
	if err != nil {
		C.rdma_reject(child, nil, 0)
		q.destroy()
		return nil, err
	}
	q.finishSetup()
	return q, nil
}

// Close stops listening; it waits for Accept calls to return.
func (l *nativeListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	_, _ = unix.Write(l.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	l.accepting.Wait()
	C.rdma_destroy_id(l.id)
	C.rdma_destroy_event_channel(l.ch)
	_ = unix.Close(l.wake)
	return nil
}

// nativeDomain is the protection domain of one device context, shared by
// every queue pair on it for the life of the process.
type nativeDomain struct {
	pd *C.struct_ibv_pd
}

var (
	domainsMu sync.Mutex
	domains   = map[*C.struct_ibv_context]*nativeDomain{}
)

// domainFor returns the protection domain of a device context, allocating
// it on first use.
func domainFor(ctx *C.struct_ibv_context) (*nativeDomain, error) {
	domainsMu.Lock()
	defer domainsMu.Unlock()
	if d := domains[ctx]; d != nil {
		return d, nil
	}
	pd, err := C.ibv_alloc_pd(ctx)
	if pd == nil {
		return nil, fmt.Errorf("allocate protection domain: %w", err)
	}
	d := &nativeDomain{pd: pd}
	domains[ctx] = d
	return d, nil
}

var _ Domain = (*nativeDomain)(nil)

// Register maps memory outside the Go heap and registers it with the
// device. Pinning pages counts against RLIMIT_MEMLOCK; a refusal for it
// fails with a MemlockError.
func (d *nativeDomain) Register(size int, access Access) (Region, error) {
	b, err := MapMemory(size)
	if err != nil {
		return nil, err
	}
	var rr, rw C.int
	if access&AccessRemoteRead != 0 {
		rr = 1
	}
	if access&AccessRemoteWrite != 0 {
		rw = 1
	}
	mr, err := C.strata_reg_mr(d.pd, unsafe.Pointer(&b[0]), C.size_t(size), rr, rw)
	if mr == nil {
		_ = UnmapMemory(b)
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.ENOMEM || errno == syscall.EPERM || errno == syscall.EAGAIN) {
			return nil, MemlockError(size, errno)
		}
		return nil, fmt.Errorf("rdma: register %d bytes: %w", size, err)
	}
	return &nativeRegion{buf: b, mr: mr}, nil
}

// nativeRegion is registered memory.
type nativeRegion struct {
	buf  []byte
	mr   *C.struct_ibv_mr
	once sync.Once
}

var _ Region = (*nativeRegion)(nil)

// Bytes returns the region's memory.
func (r *nativeRegion) Bytes() []byte { return r.buf }

// Remote describes the region for peers.
func (r *nativeRegion) Remote() Remote {
	return Remote{Addr: uint64(uintptr(unsafe.Pointer(&r.buf[0]))), Key: uint32(r.mr.rkey), Len: uint32(len(r.buf))}
}

// Close deregisters and unmaps the region.
func (r *nativeRegion) Close() error {
	var err error
	r.once.Do(func() {
		if e := C.ibv_dereg_mr(r.mr); e != 0 {
			err = fmt.Errorf("rdma: deregister: %w", syscall.Errno(e))
			return
		}
		err = UnmapMemory(r.buf)
	})
	return err
}

// localRange returns the address and lkey of r[off:off+n].
func localRange(r Region, off, n int) (unsafe.Pointer, C.uint32_t, error) {
	nr, ok := r.(*nativeRegion)
	if !ok {
		return nil, 0, errors.New("rdma: region not registered by these verbs")
	}
	if off < 0 || n < 0 || off+n > len(nr.buf) {
		return nil, 0, fmt.Errorf("rdma: range [%d,%d) outside a %d-byte region", off, off+n, len(nr.buf))
	}
	return unsafe.Add(unsafe.Pointer(&nr.buf[0]), off), nr.mr.lkey, nil
}
