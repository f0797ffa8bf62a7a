/*
 * mpiio_test: an IO500 ior-hard style MPI-IO check of one shared file
 * through two client mounts of the same Strata filesystem.
 *
 * Every rank writes nrec records of 47008 bytes (unaligned on purpose) into
 * one file, record i of rank r at offset (i * nranks + r) * 47008, through
 * mount[r % 2]; after a barrier it reads back every record of rank
 * (r + 1) % nranks through mount[(r + 1) % 2] and again through mount[r % 2]
 * (with an even rank count, one of the two is the client the records were
 * not written through), checking every byte against a pattern derived from
 * (phase, rank, record, offset).
 * Three phases, each on a file of its own:
 *
 *   independent  one MPI_File_write_at per record
 *   collective   one MPI_File_write_at_all per record
 *   sieving      one MPI_File_write_at_all of a strided file view with the
 *                ROMIO hints romio_ds_write=enable, romio_ds_read=enable,
 *                romio_cb_write=disable, romio_cb_read=disable: ROMIO then
 *                writes by data sieving, a read-modify-write of whole
 *                regions under fcntl write locks, so ranks on different
 *                mounts overwrite each other's records unless the locks and
 *                the data are coherent across clients; the check reads
 *                through a strided view by data sieving too.
 *
 * Usage: mpiio_test MOUNT0 MOUNT1 [RECORDS]   (default 20 records per rank)
 * Rank 0 prints one line per phase and a summary line starting
 * "mpiio: PASS" or "mpiio: FAIL"; on a mismatch the line names the first
 * differing file offset. The exit status is non-zero on any failure.
 */
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD 47008

enum { INDEPENDENT, COLLECTIVE, SIEVING, NPHASES };
static const char *phase_name[NPHASES] = {"independent", "collective", "sieving"};

static int rank, nranks, nrec;

/* pattern is the byte at offset off of record rec of rank r in a phase. */
static unsigned char pattern(int phase, int r, long rec, long off)
{
    uint32_t x = (uint32_t)phase * 0x9e3779b1u ^ (uint32_t)r * 0x85ebca6bu ^
                 (uint32_t)rec * 0xc2b2ae35u ^ (uint32_t)off * 0x27d4eb2fu;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return (unsigned char)(x ^ (x >> 8));
}

static MPI_Offset record_offset(int r, long rec)
{
    return ((MPI_Offset)rec * nranks + r) * RECORD;
}

static void check(int err, const char *what)
{
    if (err != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(err, msg, &len);
        fprintf(stderr, "mpiio: rank %d: %s: %s\n", rank, what, msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
}

/* strided_view makes the records of rank r the visible part of fh. */
static void strided_view(MPI_File fh, int r, MPI_Info info)
{
    MPI_Datatype filetype;
    check(MPI_Type_vector(nrec, RECORD, nranks * RECORD, MPI_BYTE, &filetype), "type_vector");
    check(MPI_Type_commit(&filetype), "type_commit");
    check(MPI_File_set_view(fh, (MPI_Offset)r * RECORD, MPI_BYTE, filetype, "native", info), "set_view");
    MPI_Type_free(&filetype);
}

/* verify reads the records of the next rank through path (on mount m) and
 * checks every byte; it returns the number of wrong bytes and lowers *first
 * to the first wrong file offset. */
static long verify(int phase, const char *path, int m, MPI_Info info, long long *first)
{
    int neighbour = (rank + 1) % nranks;
    size_t total = (size_t)nrec * RECORD;
    unsigned char *buf = calloc(total, 1);
    MPI_File fr;
    MPI_Status st;
    long bad = 0;

    if (buf == NULL) {
        fprintf(stderr, "mpiio: rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    check(MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_RDONLY, info, &fr), "open for reading");
    if (phase == SIEVING) {
        strided_view(fr, neighbour, info);
        check(MPI_File_read_at_all(fr, 0, buf, (int)total, MPI_BYTE, &st), "read_at_all (strided view)");
    } else {
        for (long i = 0; i < nrec; i++) {
            int got = 0;
            check(MPI_File_read_at(fr, record_offset(neighbour, i), buf + i * RECORD, RECORD, MPI_BYTE, &st),
                  "read_at");
            MPI_Get_count(&st, MPI_BYTE, &got);
            if (got != RECORD)
                fprintf(stderr, "mpiio: rank %d: %s: mount %d: short read of record %ld of rank %d: %d bytes\n",
                        rank, phase_name[phase], m, i, neighbour, got);
        }
    }
    for (long i = 0; i < nrec; i++)
        for (long j = 0; j < RECORD; j++) {
            unsigned char want = pattern(phase, neighbour, i, j), got = buf[i * RECORD + j];
            if (got == want)
                continue;
            if (bad++ == 0) {
                long long off = record_offset(neighbour, i) + j;
                if (off < *first)
                    *first = off;
                fprintf(stderr,
                        "mpiio: rank %d: %s: mount %d: first mismatch at file offset %lld (record %ld of "
                        "rank %d, byte %ld): got 0x%02x, want 0x%02x\n",
                        rank, phase_name[phase], m, off, i, neighbour, j, got, want);
            }
        }
    if (rank == 0) {
        MPI_Offset size = 0, want = (MPI_Offset)nranks * (MPI_Offset)total;
        check(MPI_File_get_size(fr, &size), "get_size");
        if (size != want) {
            fprintf(stderr, "mpiio: %s: mount %d: file size %lld, want %lld\n", phase_name[phase], m,
                    (long long)size, (long long)want);
            bad++;
            if (size < want && size < *first)
                *first = size;
        }
    }
    check(MPI_File_close(&fr), "close (reader)");
    free(buf);
    return bad;
}

/* run_phase writes, reads back and verifies one phase; it returns the
 * number of wrong bytes this rank saw and sets *first to the first wrong
 * file offset (LLONG_MAX if none). */
static long run_phase(int phase, char *const mounts[2], long long *first)
{
    char wpath[4096], rpath[4096];
    MPI_Info info = MPI_INFO_NULL;
    MPI_File fw;
    MPI_Status st;
    size_t total = (size_t)nrec * RECORD;
    unsigned char *buf = malloc(total);
    long bad = 0;

    if (buf == NULL) {
        fprintf(stderr, "mpiio: rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    snprintf(wpath, sizeof wpath, "%s/mpiio-%s.dat", mounts[rank % 2], phase_name[phase]);
    if (phase == SIEVING) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "romio_ds_write", "enable");
        MPI_Info_set(info, "romio_ds_read", "enable");
        MPI_Info_set(info, "romio_cb_write", "disable");
        MPI_Info_set(info, "romio_cb_read", "disable");
    }

    for (long i = 0; i < nrec; i++)
        for (long j = 0; j < RECORD; j++)
            buf[i * RECORD + j] = pattern(phase, rank, i, j);
    check(MPI_File_open(MPI_COMM_WORLD, wpath, MPI_MODE_CREATE | MPI_MODE_RDWR, info, &fw), "open for writing");
    switch (phase) {
    case INDEPENDENT:
        for (long i = 0; i < nrec; i++)
            check(MPI_File_write_at(fw, record_offset(rank, i), buf + i * RECORD, RECORD, MPI_BYTE, &st), "write_at");
        break;
    case COLLECTIVE:
        for (long i = 0; i < nrec; i++)
            check(MPI_File_write_at_all(fw, record_offset(rank, i), buf + i * RECORD, RECORD, MPI_BYTE, &st),
                  "write_at_all");
        break;
    case SIEVING:
        strided_view(fw, rank, info);
        check(MPI_File_write_at_all(fw, 0, buf, (int)total, MPI_BYTE, &st), "write_at_all (strided view)");
        break;
    }
    check(MPI_File_sync(fw), "sync");
    MPI_Barrier(MPI_COMM_WORLD);

    /* Read the neighbour's records while the writers still hold the file
     * open: through mount[(r + 1) % 2], the one this rank did not write
     * through, and through mount[r % 2], the one the neighbour did not
     * write through, so every record is checked from the other client. */
    *first = LLONG_MAX;
    for (int k = 0; k < 2; k++) {
        int m = (rank + 1 + k) % 2;
        snprintf(rpath, sizeof rpath, "%s/mpiio-%s.dat", mounts[m], phase_name[phase]);
        bad += verify(phase, rpath, m, info, first);
    }
    check(MPI_File_close(&fw), "close (writer)");
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    free(buf);
    return bad;
}

int main(int argc, char **argv)
{
    int failed = 0;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc < 3 || argc > 4) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiio_test MOUNT0 MOUNT1 [RECORDS]\n");
        MPI_Finalize();
        return 2;
    }
    nrec = argc == 4 ? atoi(argv[3]) : 20;
    if (nrec < 1 || (long long)nrec * RECORD > INT_MAX) {
        if (rank == 0)
            fprintf(stderr, "mpiio: bad record count %s\n", argv[3]);
        MPI_Finalize();
        return 2;
    }
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);

    for (int phase = 0; phase < NPHASES; phase++) {
        long long first, first_all;
        long bad = run_phase(phase, argv + 1, &first), bad_all = 0;
        MPI_Allreduce(&bad, &bad_all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        MPI_Allreduce(&first, &first_all, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
        if (rank == 0) {
            if (bad_all == 0)
                printf("mpiio: %s: ok (%d ranks x %d records of %d bytes)\n", phase_name[phase], nranks, nrec,
                       RECORD);
            else
                printf("mpiio: %s: %ld wrong bytes, first at file offset %lld\n", phase_name[phase], bad_all,
                       first_all);
        }
        failed |= bad_all != 0;
    }
    if (rank == 0) {
        printf("mpiio: %s: %d ranks, %d records of %d bytes per rank, %d phases, two mounts\n",
               failed ? "FAIL" : "PASS", nranks, nrec, RECORD, NPHASES);
        fflush(stdout);
    }
    MPI_Finalize();
    return failed ? 1 : 0;
}
