/* raw.S: the raw victim of the race benchmark (from
 * spec/integration/deny/raw.S). Static, no libc, no ELF interpreter: _start
 * goes straight to creat(argv[1], 0644), which leaves a marker file if this
 * program ever ran, then sleeps 1 s (nanosleep), so that a kill has time to
 * land, then exit(0).
 * Build: cc -nostdlib -static -no-pie -o raw raw.S */
	.text
	.globl	_start
_start:
	movq	16(%rsp), %rdi		/* argv[1]: the marker path */
	movl	$0644, %esi
	movl	$85, %eax		/* SYS_creat */
	syscall
	leaq	onesec(%rip), %rdi	/* nanosleep(&onesec, NULL) */
	xorl	%esi, %esi
	movl	$35, %eax		/* SYS_nanosleep */
	syscall
	movl	$60, %eax		/* SYS_exit */
	xorl	%edi, %edi
	syscall

	.section .rodata
	.balign	8
onesec:
	.quad	1			/* tv_sec */
	.quad	0			/* tv_nsec */

	.section .note.GNU-stack, "", @progbits
