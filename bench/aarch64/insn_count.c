/*
 * A qemu TCG plugin that counts the guest instructions a program executes, in total and those
 * that are Advanced SIMD / floating-point data processing (A64 encoding bits 27:25 = 0b111),
 * so that an aarch64 build's work per token can be compared between its NEON and portable
 * paths under `qemu-aarch64`, without an ARM machine.
 *
 * Written against the plugin API of qemu 7.2 (API version 1; what Debian 12 ships). Only the
 * few entry points used here are declared, so no qemu source tree is needed to build it:
 *
 *     gcc -O2 -shared -fPIC -o insn_count.so bench/aarch64/insn_count.c
 *     qemu-aarch64 -plugin ./insn_count.so,out=counts.txt[,profile=blocks.txt] ./program
 *
 * profile=FILE also writes each translated block's address, size and execution count, which
 * bench/aarch64/profile.py turns into instructions per function (from the binary's symbols).
 *
 * The counters are added inline by the translated code, without atomics: run the guest with
 * one thread (smolt: --threads 1), or concurrent threads may lose increments.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t total;
static uint64_t simd;
static char out_path[4096];
static char profile_path[4096];

/* With profile=FILE: one counter per translated block, written as "vaddr insns executions"
 * lines at exit (a block translated twice appears twice; sum by vaddr). Blocks are never
 * freed: their counters are read at exit. */
struct block {
    uint64_t vaddr;
    uint64_t insns;
    uint64_t execs;
    struct block *next;
};
static struct block *blocks;

static int is_simd_fp(const struct qemu_plugin_insn *insn) {
    uint32_t word;
    if (qemu_plugin_insn_size(insn) != 4) return 0;
    memcpy(&word, qemu_plugin_insn_data(insn), 4);
    return ((word >> 25) & 7) == 7;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t vector = 0;
    for (size_t i = 0; i < n; i++) vector += is_simd_fp(qemu_plugin_tb_get_insn(tb, i));
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    if (vector) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &simd, vector);
    if (profile_path[0]) {
        struct block *b = calloc(1, sizeof *b);
        if (!b) return;
        b->vaddr = qemu_plugin_tb_vaddr(tb);
        b->insns = n;
        b->next = blocks;
        blocks = b; /* translation is serialised by qemu's translation lock */
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
    }
}

static void report(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    FILE *f = out_path[0] ? fopen(out_path, "w") : stderr;
    if (!f) f = stderr;
    fprintf(f, "instructions %" PRIu64 "\nsimd_fp %" PRIu64 "\n", total, simd);
    if (f != stderr) fclose(f);
    if (profile_path[0]) {
        FILE *p = fopen(profile_path, "w");
        if (!p) return;
        for (struct block *b = blocks; b; b = b->next)
            if (b->execs) fprintf(p, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", b->vaddr, b->insns, b->execs);
        fclose(p);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                                const qemu_info_t *info,
                                                                int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        } else if (strncmp(argv[i], "profile=", 8) == 0) {
            snprintf(profile_path, sizeof profile_path, "%s", argv[i] + 8);
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (known: out=FILE, profile=FILE)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, report, NULL);
    return 0;
}
