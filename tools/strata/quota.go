package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Quota verbs (lfs setquota, lfs quota, lfs project). quota and project go
// through the mount as the caller; setquota talks to the MDS with the
// cluster secret, as root.
const (
	xattrQuotaPrefix = "user.strata.quota."
	xattrProject     = "user.strata.project"
)

// quotaFlags reads -u, -g or -p with an ID (a name or number; none: the
// caller's) into a type and id.
func quotaTarget(cmd *cobra.Command, id string, needID bool) (uint8, uint32, error) {
	f := cmd.Flags()
	u, _ := f.GetBool("user")
	g, _ := f.GetBool("group")
	p, _ := f.GetBool("project")
	n := 0
	for _, b := range []bool{u, g, p} {
		if b {
			n++
		}
	}
	if n > 1 {
		return 0, 0, errors.New("give one of -u, -g, -p")
	}
	typ := proto.QuotaUser
	switch {
	case g:
		typ = proto.QuotaGroup
	case p:
		typ = proto.QuotaProject
	}
	if id == "" {
		if needID || typ == proto.QuotaProject {
			return 0, 0, errors.New("no ID given")
		}
		if typ == proto.QuotaGroup {
			return typ, uint32(os.Getgid()), nil
		}
		return typ, uint32(os.Getuid()), nil
	}
	if v, err := strconv.ParseUint(id, 10, 32); err == nil {
		return typ, uint32(v), nil
	}
	switch typ {
	case proto.QuotaUser:
		u, err := user.Lookup(id)
		if err != nil {
			return 0, 0, err
		}
		v, err := strconv.ParseUint(u.Uid, 10, 32)
		return typ, uint32(v), err
	case proto.QuotaGroup:
		g, err := user.LookupGroup(id)
		if err != nil {
			return 0, 0, err
		}
		v, err := strconv.ParseUint(g.Gid, 10, 32)
		return typ, uint32(v), err
	}
	return 0, 0, fmt.Errorf("invalid project ID %q", id)
}

func addQuotaTypeFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolP("user", "u", false, "a user (name or uid)")
	f.BoolP("group", "g", false, "a group (name or gid)")
	f.BoolP("project", "p", false, "a project ID")
}

func newSetquotaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setquota -u|-g|-p ID [-b SOFT] [-B HARD] [-i SOFT] [-I HARD] PATH",
		Short: "Set the block and inode limits of a user, group or project (root)",
		Long: `Set limits as lfs setquota does: -b and -B the soft and hard block limits
(bytes; suffixes k, M, G, T; a bare number is KiB as in lfs), -i and -I the soft
and hard inode limits; 0 removes a limit, options left out keep theirs. Past a
soft limit the ID may go on for a grace period of a week. Inode limits hold
exactly. Block usage is the sum of file sizes the MDS knows; writers get room in
chunks of 4 MiB per file, so usage can pass the hard limit by up to 4 MiB and
the write under way per file being written when the limit is reached.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			typ, id, err := quotaTarget(cmd, args[0], true)
			if err != nil {
				return fail("setquota", args[0], err)
			}
			req := proto.SetQuotaReq{Type: typ, ID: id}
			f := cmd.Flags()
			for _, l := range []struct {
				flag  string
				bit   uint32
				dst   *uint64
				bytes bool
			}{{"block-softlimit", proto.SetBlockSoft, &req.Limits.BlockSoft, true}, {"block-hardlimit", proto.SetBlockHard, &req.Limits.BlockHard, true},
				{"inode-softlimit", proto.SetInodeSoft, &req.Limits.InodeSoft, false}, {"inode-hardlimit", proto.SetInodeHard, &req.Limits.InodeHard, false}} {
				if !f.Changed(l.flag) {
					continue
				}
				v, _ := f.GetString(l.flag)
				n, err := parseQuotaLimit(v, l.bytes)
				if err != nil {
					return fail("setquota", args[1], fmt.Errorf("--%s %s: %w", l.flag, v, err))
				}
				*l.dst, req.Valid = n, req.Valid|l.bit
			}
			if req.Valid == 0 {
				return fail("setquota", args[1], errors.New("no limit given (-b, -B, -i, -I)"))
			}
			a, err := openAdmin(cmd, args[1:])
			if err != nil {
				return fail("setquota", args[1], err)
			}
			defer a.close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var resp proto.QuotaResp
			if err := a.callAny(ctx, proto.OpSetQuota, &req, &resp); err != nil {
				return fail("setquota", args[1], err)
			}
			if asJSON, _ := f.GetBool("json"); asJSON {
				return json.NewEncoder(os.Stdout).Encode(quotaJSON(args[1], &resp))
			}
			return nil
		},
	}
	addQuotaTypeFlags(cmd)
	addAdminFlags(cmd)
	f := cmd.Flags()
	f.StringP("block-softlimit", "b", "", "soft block limit")
	f.StringP("block-hardlimit", "B", "", "hard block limit")
	f.StringP("inode-softlimit", "i", "", "soft inode limit")
	f.StringP("inode-hardlimit", "I", "", "hard inode limit")
	return cmd
}

// parseQuotaLimit reads a limit: inodes as a count, bytes with a suffix or,
// bare, in KiB as lfs setquota reads them.
func parseQuotaLimit(s string, bytes bool) (uint64, error) {
	if !bytes {
		return strconv.ParseUint(s, 10, 64)
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n << 10, nil
	}
	n, err := layout.ParseSize(s)
	return uint64(n), err
}

func newQuotaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quota [-u|-g|-p] [ID] PATH",
		Short: "Show the usage and limits of a user, group or project",
		Long: `Show usage and limits as lfs quota does; without an ID, the caller's own user
(or, with -g, group). A user may look at itself, its groups and any project.
--json prints {"path","type","id","kbytes","bytes","files","limits":{...},"grace":{...}}.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, idArg := args[len(args)-1], ""
			if len(args) == 2 {
				idArg = args[0]
			}
			typ, id, err := quotaTarget(cmd, idArg, false)
			if err != nil {
				return fail("quota", path, err)
			}
			mnt, err := mountFor(path)
			if err != nil {
				return fail("quota", path, err)
			}
			var resp proto.QuotaResp
			name := fmt.Sprintf("%s%c.%d", xattrQuotaPrefix, "ugp"[typ], id)
			if err := getJSONXattr(mnt, name, &resp); err != nil {
				return fail("quota", path, err)
			}
			resp.Type = typ
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return json.NewEncoder(os.Stdout).Encode(quotaJSON(mnt, &resp))
			}
			printQuota(mnt, &resp)
			return nil
		},
	}
	addQuotaTypeFlags(cmd)
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

// quotaJSON is quota --json's document.
func quotaJSON(path string, r *proto.QuotaResp) map[string]any {
	return map[string]any{"path": path, "type": []string{"usr", "grp", "prj"}[r.Type], "id": r.ID,
		"kbytes": (r.Bytes + 1023) / 1024, "bytes": r.Bytes, "files": r.Inodes,
		"limits": map[string]uint64{"block_soft": r.Limits.BlockSoft, "block_hard": r.Limits.BlockHard,
			"inode_soft": r.Limits.InodeSoft, "inode_hard": r.Limits.InodeHard},
		"grace": map[string]int64{"block": r.Limits.BlockGrace, "inode": r.Limits.InodeGrace}}
}

// printQuota prints lfs quota's table.
func printQuota(mnt string, r *proto.QuotaResp) {
	kind := []string{"usr", "grp", "prj"}[r.Type]
	who := ""
	switch r.Type {
	case proto.QuotaUser:
		if u, err := user.LookupId(strconv.Itoa(int(r.ID))); err == nil {
			who = u.Username
		}
	case proto.QuotaGroup:
		if g, err := user.LookupGroupId(strconv.Itoa(int(r.ID))); err == nil {
			who = g.Name
		}
	}
	label := map[uint8]string{proto.QuotaUser: "uid", proto.QuotaGroup: "gid", proto.QuotaProject: "projid"}[r.Type]
	if who != "" {
		fmt.Printf("Disk quotas for %s %s (%s %d):\n", kind, who, label, r.ID)
	} else {
		fmt.Printf("Disk quotas for %s %d (%s %d):\n", kind, r.ID, label, r.ID)
	}
	grace := func(deadline int64) string {
		if deadline == 0 {
			return "-"
		}
		left := time.Until(time.Unix(0, deadline))
		if left <= 0 {
			return "none"
		}
		return left.Round(time.Second).String()
	}
	kb := (r.Bytes + 1023) / 1024
	mark := func(used, soft, hard uint64) string {
		if soft > 0 && used > soft || hard > 0 && used > hard {
			return "*"
		}
		return ""
	}
	fmt.Printf("%15s %8s %7s %7s %7s %7s %7s %7s %7s\n", "Filesystem", "kbytes", "quota", "limit", "grace", "files", "quota", "limit", "grace")
	fmt.Printf("%15s %8s %7d %7d %7s %7s %7d %7d %7s\n", mnt,
		strconv.FormatInt(kb, 10)+mark(uint64(r.Bytes), r.Limits.BlockSoft, r.Limits.BlockHard), r.Limits.BlockSoft/1024,
		r.Limits.BlockHard/1024, grace(r.Limits.BlockGrace),
		strconv.FormatInt(r.Inodes, 10)+mark(uint64(r.Inodes), r.Limits.InodeSoft, r.Limits.InodeHard), r.Limits.InodeSoft,
		r.Limits.InodeHard, grace(r.Limits.InodeGrace))
}

func newProjectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "project [-p ID] [-s] [-C] [-r] PATH...",
		Short: "Show or set the project ID of files and directories (lfs project)",
		Long: `Without -p, -s or -C print each PATH's project ID and whether new entries
inherit it ("P") or not ("-"), as lfs project does. -p ID sets the project ID,
-s sets a directory's inherit flag (files and directories made in it take its
project, and subdirectories the flag), -C clears the flag and the ID; -r does
it to everything below a directory too. Needs the owner of each file or root.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			recursive, _ := f.GetBool("recursive")
			set := f.Changed("proj-id") || f.Changed("set-inherit") || f.Changed("clear")
			req := map[string]any{}
			if f.Changed("proj-id") {
				id, _ := f.GetUint32("proj-id")
				req["set_id"], req["project"] = true, id
			}
			if s, _ := f.GetBool("set-inherit"); s {
				req["set_inherit"], req["inherit"] = true, true
			}
			if c, _ := f.GetBool("clear"); c {
				req["set_id"], req["project"], req["set_inherit"], req["inherit"] = true, 0, true, false
			}
			for _, root := range args {
				err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					if !d.IsDir() && !d.Type().IsRegular() {
						return nil // symlinks and devices carry no project here
					}
					if set {
						r := req
						if !d.IsDir() && r["set_inherit"] == true {
							r = map[string]any{"set_id": req["set_id"], "project": req["project"]}
						}
						if err := setJSONXattr(p, xattrProject, r); err != nil {
							return fail("project", p, err)
						}
					} else {
						var resp proto.ProjectResp
						if err := getJSONXattr(p, xattrProject, &resp); err != nil {
							return fail("project", p, err)
						}
						flag := "-"
						if resp.Inherit {
							flag = "P"
						}
						fmt.Printf("%5d %s %s\n", resp.Project, flag, p)
					}
					if d.IsDir() && !recursive {
						return filepath.SkipDir // PATH itself only
					}
					return nil
				})
				if err != nil {
					return fail("project", root, err)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint32P("proj-id", "p", 0, "set this project ID")
	f.BoolP("set-inherit", "s", false, "new entries of the directory inherit its project")
	f.BoolP("clear", "C", false, "clear the project ID and the inherit flag")
	f.BoolP("recursive", "r", false, "every file and directory below too")
	return cmd
}
