/* raw.S: the raw victim of spec/integration/deny_spec.lua. Static, no libc,
 * no ELF interpreter: _start goes straight to creat(argv[1], 0644), which
 * leaves a marker file if this program ever ran, then exit(0). A tag in
 * .rodata gives the spec a byte to flip without breaking execution.
 * Build: cc -nostdlib -static -no-pie -o raw raw.S */
	.text
	.globl	_start
_start:
	movq	16(%rsp), %rdi		/* argv[1]: the marker path */
	movl	$0644, %esi
	movl	$85, %eax		/* SYS_creat */
	syscall
	movl	$60, %eax		/* SYS_exit */
	xorl	%edi, %edi
	syscall

	.section .rodata
	.ascii	"PWDENY-TAG-0123456789abcdef"

	.section .note.GNU-stack, "", @progbits
