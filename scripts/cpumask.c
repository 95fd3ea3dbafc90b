/* Run a program natively on this x86-64 CPU as if it lacked AVX-512, VNNI or AMX.
 *
 * Int8 kernels (ONNX Runtime's MLAS, torch's fbgemm and oneDNN, numpy) pick their code by
 * reading `cpuid`. Linux can make `cpuid` trap (arch_prctl ARCH_SET_CPUID, on CPUs with
 * "cpuid_fault"); this library, preloaded, turns that on before the program's own code runs
 * and answers each trapped `cpuid` with the real answer minus the features of a smaller CPU.
 * The kernels then take the code path that CPU would, at full speed: an AVX2 machine's
 * u8 x s8 kernels (vpmaddubsw, whose 16-bit pair sums saturate) on this machine's cores.
 * qemu-user (`-cpu Haswell`) shows the same path about 800x slower.
 *
 * CPUMASK (environment) picks the CPU presented:
 *   avx2    no AVX-512, no VNNI (AVX-512 or AVX-VNNI), no AMX: an AVX2 machine (Haswell..Zen 3)
 *   avx512  AVX-512 without VNNI or AMX (Skylake-SP)
 *   sse4    no AVX at all
 * Unset or empty: nothing is hidden. The setting is per process tree: children inherit
 * LD_PRELOAD and CPUMASK, and each re-arms the trap when it starts (exec clears it).
 *
 * What stays true to the real CPU: the brand string, cache sizes, glibc's own string routines
 * (picked before this library loads; scripts/cpumask.sh also sets GLIBC_TUNABLES), and
 * `xgetbv` (the OS still saves AVX-512 state). A SIGSEGV handler installed by the program
 * (Python's faulthandler) is kept and called for every fault that is not a trapped `cpuid`.
 *
 * Build: gcc -O2 -shared -fPIC -o libcpumask.so cpumask.c -ldl   (scripts/cpumask.sh does it)
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* Bits cleared from leaf 1 (ecx) and leaf 7 (subleaf 0: ebx, ecx, edx; subleaf 1: eax, edx). */
struct mask {
    const char *name;
    uint32_t l1_ecx, l7_ebx, l7_ecx, l7_edx, l71_eax, l71_edx;
};

/* AVX-512 foundation and its families (leaf 7.0 ebx: F DQ IFMA PF ER CD BW VL;
 * ecx: VBMI VBMI2 BITALG VPOPCNTDQ; edx: 4VNNIW 4FMAPS VP2INTERSECT FP16). */
#define AVX512_EBX (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))
#define AVX512_ECX (BIT(1) | BIT(6) | BIT(12) | BIT(14))
#define AVX512_EDX (BIT(2) | BIT(3) | BIT(8) | BIT(23))
#define VNNI_ECX BIT(11)                                /* AVX512_VNNI */
#define AMX_EDX (BIT(22) | BIT(24) | BIT(25))           /* AMX_BF16 AMX_TILE AMX_INT8 */
#define L71_EAX (BIT(4) | BIT(5) | BIT(21) | BIT(23))   /* AVX_VNNI AVX512_BF16 AMX_FP16 AVX_IFMA */
#define L71_EDX (BIT(4) | BIT(5) | BIT(10) | BIT(19))   /* AVX_VNNI_INT8 AVX_NE_CONVERT AVX_VNNI_INT16 AVX10 */
#define AVX_ECX (BIT(12) | BIT(28) | BIT(29))           /* FMA AVX F16C */
#define AVX2_EBX BIT(5)

static const struct mask MASKS[] = {
    {"avx2", 0, AVX512_EBX, AVX512_ECX | VNNI_ECX, AVX512_EDX | AMX_EDX, L71_EAX, L71_EDX},
    {"avx512", 0, 0, VNNI_ECX, AMX_EDX | BIT(23), L71_EAX, L71_EDX},
    {"sse4", AVX_ECX, AVX512_EBX | AVX2_EBX, AVX512_ECX | VNNI_ECX, AVX512_EDX | AMX_EDX, L71_EAX, L71_EDX},
};

static const struct mask *active;
static struct sigaction chained; /* the program's own SIGSEGV action */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void set_trap(int on) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void masked_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    set_trap(0);
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    set_trap(1);
    if (leaf == 1) {
        r[2] &= ~active->l1_ecx;
    } else if (leaf == 7 && sub == 0) {
        r[1] &= ~active->l7_ebx;
        r[2] &= ~active->l7_ecx;
        r[3] &= ~active->l7_edx;
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~active->l71_eax;
        r[3] &= ~active->l71_edx;
    } else if (leaf == 0x24 || leaf == 0x1d || leaf == 0x1e) { /* AVX10, AMX tile info */
        r[0] = r[1] = r[2] = r[3] = 0;
    }
}

static void chain(int sig, siginfo_t *info, void *context) {
    if (chained.sa_flags & SA_SIGINFO) {
        chained.sa_sigaction(sig, info, context);
    } else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
        chained.sa_handler(sig);
    } else { /* default action: return, fault again, die with the usual signal */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        real_sigaction(SIGSEGV, &dfl, NULL);
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    /* A trapped cpuid is a general-protection fault (SI_KERNEL) at a readable instruction. */
    if (info->si_code == SI_KERNEL) {
        const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
        if (ip[0] == 0x0f && ip[1] == 0xa2) {
            int saved = errno;
            uint32_t r[4];
            masked_cpuid((uint32_t)regs[REG_RAX], (uint32_t)regs[REG_RCX], r);
            regs[REG_RAX] = r[0];
            regs[REG_RBX] = r[1];
            regs[REG_RCX] = r[2];
            regs[REG_RDX] = r[3];
            regs[REG_RIP] += 2;
            errno = saved;
            return;
        }
    }
    chain(sig, info, context);
}

/* The program's SIGSEGV handler is recorded, not installed: ours stays in front and chains. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    if (!active || sig != SIGSEGV) return real_sigaction(sig, act, old);
    if (old) *old = chained;
    if (act) chained = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    struct sigaction act = {.sa_handler = handler}, old;
    sigemptyset(&act.sa_mask);
    act.sa_flags = SA_RESTART;
    if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
    return old.sa_handler;
}

__attribute__((constructor)) static void arm(void) {
    const char *want = getenv("CPUMASK");
    if (!want || !*want) return;
    for (size_t i = 0; i < sizeof MASKS / sizeof MASKS[0]; i++)
        if (strcmp(want, MASKS[i].name) == 0) active = &MASKS[i];
    if (!active) {
        fprintf(stderr, "cpumask: CPUMASK=%s is not one of avx2, avx512, sse4\n", want);
        _exit(2);
    }
    real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    struct sigaction act = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigemptyset(&act.sa_mask);
    real_sigaction(SIGSEGV, &act, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpumask: this kernel or CPU cannot trap cpuid (no cpuid_fault): %s\n", strerror(errno));
        _exit(2);
    }
}
