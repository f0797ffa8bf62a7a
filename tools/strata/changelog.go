package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/proto"
)

const changelogHelp = `Read the changelog of the metadata targets, and manage its consumers (Lustre's
lfs changelog, changelog_register, changelog_clear, changelog_deregister).

  strata changelog [--follow] [--json] [--user ID] [--mdt N] [PATH]
  strata changelog register [--name NAME] [PATH]       prints the new consumer's id (cl1, ...)
  strata changelog clear ID [MDT:]INDEX [PATH]         ID is done with entries up to INDEX (MDT 0 by default)
  strata changelog deregister ID [PATH]
  strata changelog list [--json] [PATH]                the consumers and their cursors

Every namespace change is an entry, numbered per MDT and written with the
change: CREAT MKDIR HLINK SLINK MKNOD UNLNK RMDIR RENME CLOSE (after writes)
LYOUT TRUNC SATTR XATTR HSM MIGRT. Entries print as lfs changelog prints them:

  INDEX NNTYPE HH:MM:SS.NNNNNNNNN YYYY.MM.DD 0xFLAGS u=UID:GID t=[TARGET] p=[PARENT] NAME
  (a rename adds s=[SOURCE] sp=[SOURCE_PARENT] SOURCE_NAME)

--user ID starts after what consumer ID has cleared; a consumer that clears
what it has processed never misses an entry across restarts, and entries are
kept until every registered consumer has cleared them (with none, the newest
100000 per MDT are kept). --follow waits for new entries. --json prints
{"entries":[{"mdt","index","type","time","target","parent","name",...}]}, or
with --follow one such entry object per line.

The changelog is read from the MDSes with the cluster secret, as fsck does
(PATH on a mount, --config FILE, or --mds ADDR with --secret-file).`

func newChangelogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "changelog [register|clear|deregister|list] [ARGS] [PATH]",
		Short: "Read the changelog, and register, clear and deregister its consumers",
		Long:  changelogHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			verb := ""
			if len(args) > 0 && slices.Contains([]string{proto.ChangelogRegister, proto.ChangelogClear, proto.ChangelogDeregister, proto.ChangelogUsers}, args[0]) {
				verb, args = args[0], args[1:]
			}
			need := map[string]int{proto.ChangelogClear: 2, proto.ChangelogDeregister: 1}[verb]
			if len(args) < need || len(args) > need+1 {
				return fail("changelog", "", fmt.Errorf("wrong arguments (see strata changelog --help)"))
			}
			var mnt []string
			if len(args) > need {
				mnt = args[need:]
			}
			a, err := openAdmin(cmd, mnt)
			if err != nil {
				return fail("changelog", strings.Join(mnt, ""), err)
			}
			defer a.close()
			if verb == "" {
				return readChangelog(cmd, a)
			}
			return changelogUsers(cmd, a, verb, args[:need])
		},
	}
	addAdminFlags(cmd)
	f := cmd.Flags()
	f.Bool("follow", false, "wait for new entries")
	f.String("user", "", "start after what consumer ID has cleared")
	f.Int32("mdt", -1, "read this MDT only")
	f.String("name", "", "a name for the consumer (register)")
	return cmd
}

// changelogUsers runs register, clear, deregister or list.
func changelogUsers(cmd *cobra.Command, a *adminCluster, verb string, args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := proto.ChangelogUserReq{Op: verb}
	req.Name, _ = cmd.Flags().GetString("name")
	if len(args) > 0 {
		req.ID = args[0]
	}
	if verb == proto.ChangelogClear {
		mdt, idx, err := parseClearIndex(args[1])
		if err != nil {
			return fail("changelog", args[1], err)
		}
		req.MDT, req.Index = mdt, idx
	}
	var resp proto.ChangelogUserResp
	var err error
	if verb == proto.ChangelogClear {
		err = a.callMDT(ctx, req.MDT, proto.OpChangelogUser, &req, &resp)
	} else {
		err = a.callAny(ctx, proto.OpChangelogUser, &req, &resp)
	}
	if err != nil {
		return fail("changelog", req.ID, err)
	}
	asJSON, _ := cmd.Flags().GetBool("json")
	switch {
	case asJSON:
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"users": resp.Users})
	case verb == proto.ChangelogRegister && len(resp.Users) > 0:
		fmt.Printf("Registered changelog userid '%s'\n", resp.Users[0].ID)
	case verb == proto.ChangelogUsers:
		for _, u := range resp.Users {
			fmt.Printf("%s", u.ID)
			for _, m := range slices.Sorted(maps.Keys(u.Cursors)) {
				fmt.Printf(" MDT%04x:%d", m, u.Cursors[m])
			}
			if u.Name != "" {
				fmt.Printf(" (%s)", u.Name)
			}
			fmt.Println()
		}
	}
	return nil
}

// parseClearIndex reads [MDT:]INDEX (MDT as N or MDTnnnn).
func parseClearIndex(s string) (uint32, uint64, error) {
	mdtPart, idxPart, hasMDT := strings.Cut(s, ":")
	if !hasMDT {
		mdtPart, idxPart = "0", s
	}
	mdtPart = strings.TrimPrefix(strings.ToUpper(mdtPart), "MDT")
	m, err := strconv.ParseUint(mdtPart, 16, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid MDT %q", mdtPart)
	}
	idx, err := strconv.ParseUint(idxPart, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid index %q", idxPart)
	}
	return uint32(m), idx, nil
}

// callAny sends a request to the first MDS that answers.
func (a *adminCluster) callAny(ctx context.Context, op uint16, req, resp any) error {
	if _, err := a.table(ctx); err != nil {
		return err
	}
	var last error
	for _, addr := range a.addrs {
		if last = a.rc.Call(ctx, addr, op, req, resp); last == nil || !errors.Is(last, syscall.ECONNREFUSED) {
			return last
		}
	}
	return last
}

// callMDT sends a request to the owner of mdt, learning the MDT table
// again while the MDT moves (an MDS restart or failover).
func (a *adminCluster) callMDT(ctx context.Context, mdt uint32, op uint16, req, resp any) error {
	for attempt := 0; ; attempt++ {
		table, err := a.table(ctx)
		if err == nil {
			i := slices.IndexFunc(table, func(m proto.MDT) bool { return m.Index == mdt })
			if i < 0 {
				return fmt.Errorf("no MDT %d", mdt)
			}
			if m := table[i]; m.Addr != "" && m.State != "down" {
				err = a.rc.Call(ctx, m.Addr, op, req, resp)
				if err == nil || !retryMDT(err) {
					return err
				}
			}
		}
		t := time.NewTimer(min(time.Second, 50*time.Millisecond<<min(attempt, 5)))
		select {
		case <-ctx.Done():
			t.Stop()
			if err != nil {
				return err
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// retryMDT reports whether an MDT's owner may answer after a while.
func retryMDT(err error) bool {
	for _, e := range []syscall.Errno{syscall.EREMOTE, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ETIMEDOUT,
		syscall.EPIPE, syscall.EINPROGRESS, syscall.EHOSTUNREACH} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// readChangelog prints entries of every MDT (or one) until caught up, or
// forever with --follow.
func readChangelog(cmd *cobra.Command, a *adminCluster) error {
	f := cmd.Flags()
	follow, _ := f.GetBool("follow")
	asJSON, _ := f.GetBool("json")
	user, _ := f.GetString("user")
	one, _ := f.GetInt32("mdt")
	ctx := context.Background()
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	table, err := a.table(tctx)
	cancel()
	if err != nil {
		return fail("changelog", "", err)
	}
	var mdts []uint32
	for _, m := range table {
		if one < 0 || m.Index == uint32(one) {
			mdts = append(mdts, m.Index)
		}
	}
	after := map[uint32]uint64{}
	if user != "" {
		var resp proto.ChangelogUserResp
		if err := a.callAny(ctx, proto.OpChangelogUser, &proto.ChangelogUserReq{Op: proto.ChangelogUsers}, &resp); err != nil {
			return fail("changelog", user, err)
		}
		i := slices.IndexFunc(resp.Users, func(u proto.ChangelogUser) bool { return u.ID == user })
		if i < 0 {
			return fail("changelog", user, errors.New("no such changelog consumer"))
		}
		after = resp.Users[i].Cursors
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	first := true
	if asJSON && !follow {
		w.WriteString(`{"entries":[`)
	}
	emit := func(e *proto.ChangelogEntry) error {
		if !asJSON {
			writeChangelogEntry(w, e)
			return nil
		}
		b, err := json.Marshal(changelogJSON(e))
		if err != nil {
			return err
		}
		if !follow && !first {
			w.WriteByte(',')
		}
		first = false
		w.Write(b)
		if follow {
			w.WriteByte('\n')
		}
		return nil
	}
	for {
		got := 0
		for _, m := range mdts {
			req := proto.ChangelogReq{MDT: m, After: after[m]}
			if follow {
				req.Wait = int64(2000 / len(mdts))
			}
			var resp proto.ChangelogResp
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := a.callMDT(cctx, m, proto.OpChangelog, &req, &resp)
			cancel()
			if err != nil {
				return fail("changelog", fmt.Sprintf("MDT%04x", m), err)
			}
			for i := range resp.Entries {
				if err := emit(&resp.Entries[i]); err != nil {
					return err
				}
				after[m] = resp.Entries[i].Index
			}
			got += len(resp.Entries)
		}
		if got > 0 {
			if follow {
				w.Flush()
			}
			continue
		}
		if !follow {
			break
		}
		w.Flush()
	}
	if asJSON {
		w.WriteString("]}\n")
	}
	return nil
}

// changelogJSON is an entry as --json prints it.
func changelogJSON(e *proto.ChangelogEntry) map[string]any {
	doc := map[string]any{"mdt": e.MDT, "index": e.Index, "type": proto.ChangelogTypeNames[e.Type], "time": e.Time,
		"target": fid(e.Ino), "uid": e.Uid, "gid": e.Gid, "flags": e.Flags}
	if e.Parent != 0 {
		doc["parent"], doc["name"] = fid(e.Parent), e.Name
	} else if e.Name != "" {
		doc["name"] = e.Name
	}
	if e.SrcParent != 0 {
		doc["source_parent"], doc["source_name"] = fid(e.SrcParent), e.SrcName
	}
	if e.Victim != 0 {
		doc["overwritten"] = fid(e.Victim)
	}
	return doc
}

// fid prints an inode number the way Lustre prints a FID.
func fid(ino uint64) string { return fmt.Sprintf("[0x%x:0x0:0x0]", ino) }

// writeChangelogEntry prints one entry in lfs changelog's format.
func writeChangelogEntry(w io.Writer, e *proto.ChangelogEntry) {
	t := time.Unix(0, e.Time)
	fmt.Fprintf(w, "%d %02d%s %s.%09d %s 0x%x u=%d:%d t=%s", e.Index, e.Type, proto.ChangelogTypeNames[e.Type],
		t.Format("15:04:05"), t.Nanosecond(), t.Format("2006.01.02"), e.Flags, e.Uid, e.Gid, fid(e.Ino))
	if e.Victim != 0 {
		fmt.Fprintf(w, " o=%s", fid(e.Victim))
	}
	if e.Parent != 0 {
		fmt.Fprintf(w, " p=%s %s", fid(e.Parent), e.Name)
	} else if e.Name != "" {
		fmt.Fprintf(w, " %s", e.Name)
	}
	if e.SrcParent != 0 {
		fmt.Fprintf(w, " s=%s sp=%s %s", fid(e.Ino), fid(e.SrcParent), e.SrcName)
	}
	fmt.Fprintln(w)
}
