//! The seccomp filter's program: an allowlist of system-call numbers compiled into a binary
//! search, so the kernel decides any call in a handful of comparisons.
//!
//! `seccompiler` compiles an allowlist into one comparison per call in sequence (205
//! instructions for the worker's list). Installing a filter makes the kernel run it once for
//! every system-call number to fill its per-call cache, so that length costs about 170 µs at
//! every worker start; the tree below (about 80 instructions, each call decided in at most
//! about ten) costs about 45 µs. seccompiler still installs the program and supplies its types.

use seccompiler::sock_filter;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// On x86-64, numbers with this bit set are x32 system calls, which this filter never allows.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The audit architecture of this build, which the filter checks before it reads a number (the
/// same number means another call under another ABI).
pub const ARCH: Option<u32> = if cfg!(target_arch = "x86_64") {
    Some(0xc000_003e)
} else if cfg!(target_arch = "aarch64") {
    Some(0xc000_00b7)
} else if cfg!(target_arch = "riscv64") {
    Some(0xc000_00f3)
} else {
    None
};

/// Where a jump goes, before offsets are known.
#[derive(Clone, Copy)]
enum To {
    Next,
    Allow,
    Deny,
    At(usize),
}

struct Insn {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

impl Insn {
    fn stmt(code: u16, k: u32) -> Self {
        Self::jump(code, k, To::Next, To::Next)
    }

    fn jump(code: u16, k: u32, jt: To, jf: To) -> Self {
        Self { code, k, jt, jf }
    }
}

/// A program for `arch` that returns `SECCOMP_RET_ALLOW` for the calls in `allowed` and `deny`
/// for every other call, and for any other architecture or ABI.
pub fn allowlist(arch: u32, allowed: &[u32], deny: u32) -> Result<Vec<sock_filter>, String> {
    let mut calls = allowed.to_vec();
    calls.sort_unstable();
    calls.dedup();
    let mut out = vec![
        Insn::stmt(LD_W_ABS, ARCH_OFFSET),
        Insn::jump(JEQ_K, arch, To::Next, To::Deny),
        Insn::stmt(LD_W_ABS, NR_OFFSET),
        Insn::jump(JGE_K, X32_SYSCALL_BIT, To::Deny, To::Next),
    ];
    search(&calls, &mut out);
    let deny_at = out.len();
    out.push(Insn::stmt(RET_K, deny));
    let allow_at = out.len();
    out.push(Insn::stmt(RET_K, libc::SECCOMP_RET_ALLOW));

    let mut program = Vec::with_capacity(out.len());
    for (at, insn) in out.iter().enumerate() {
        // Classic BPF jumps only forward, by an offset from the next instruction.
        let offset = |to: To| match to {
            To::Next => 0,
            To::Allow => allow_at - (at + 1),
            To::Deny => deny_at - (at + 1),
            To::At(target) => target - (at + 1),
        };
        let (jt, jf) = (offset(insn.jt), offset(insn.jf));
        program.push(if insn.code == JA {
            sock_filter {
                code: JA,
                jt: 0,
                jf: 0,
                k: u32::try_from(jt).map_err(|_| "seccomp: program too long".to_owned())?,
            }
        } else {
            let near = |o: usize| u8::try_from(o).map_err(|_| "seccomp: jump too far".to_owned());
            sock_filter {
                code: insn.code,
                jt: near(jt)?,
                jf: near(jf)?,
                k: insn.k,
            }
        });
    }
    Ok(program)
}

/// Emit the comparisons deciding whether the number loaded is one of `calls` (sorted): halves
/// split on their middle number down to a few, which are compared one by one.
fn search(calls: &[u32], out: &mut Vec<Insn>) {
    if calls.len() <= 4 {
        for &call in calls {
            out.push(Insn::jump(JEQ_K, call, To::Allow, To::Next));
        }
        out.push(Insn::jump(JA, 0, To::Deny, To::Deny));
        return;
    }
    let middle = calls.len() / 2;
    let split = out.len();
    out.push(Insn::stmt(JGE_K, calls[middle]));
    search(&calls[..middle], out);
    out[split].jt = To::At(out.len());
    search(&calls[middle..], out);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    const X86_64: u32 = 0xc000_003e;
    const DENY: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    /// What the kernel would return for a call `nr` under `arch`: the program run on a
    /// `seccomp_data` holding them (only the instructions this module emits).
    fn run(program: &[sock_filter], arch: u32, nr: u32) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = &program[pc];
            pc += 1;
            match insn.code {
                LD_W_ABS => acc = if insn.k == ARCH_OFFSET { arch } else { nr },
                JEQ_K => pc += usize::from(if acc == insn.k { insn.jt } else { insn.jf }),
                JGE_K => pc += usize::from(if acc >= insn.k { insn.jt } else { insn.jf }),
                JA => pc += insn.k as usize,
                RET_K => return insn.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn exactly_the_listed_calls_are_allowed_for_every_number_and_list_size() {
        for size in [0usize, 1, 4, 5, 17, 40, 120] {
            // Spread over the number space, with neighbours that must stay refused.
            let allowed: Vec<u32> = (0..size as u32).map(|i| i * 7 + 3).collect();
            let program = allowlist(X86_64, &allowed, DENY).unwrap();
            for nr in 0..1200 {
                let expected = if allowed.contains(&nr) {
                    libc::SECCOMP_RET_ALLOW
                } else {
                    DENY
                };
                assert_eq!(
                    run(&program, X86_64, nr),
                    expected,
                    "size {size}, call {nr}"
                );
            }
            // Another architecture, and x32 numbers, are refused whatever the number.
            assert_eq!(run(&program, 0x4000_0003, 3), DENY);
            assert_eq!(run(&program, X86_64, X32_SYSCALL_BIT | 3), DENY);
        }
    }

    #[test]
    fn the_workers_list_compiles_to_a_short_program() {
        let allowed: Vec<u32> = (0..40).map(|i| i * 3).collect();
        let program = allowlist(X86_64, &allowed, DENY).unwrap();
        assert!(program.len() < 100, "{} instructions", program.len());
    }
}
