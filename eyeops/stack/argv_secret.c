/* Keeps a secret off a program's command line (issue 28, item 7).
 *
 * tritonserver takes the key of its restricted APIs only as an argument, and any local user reads
 * every process's arguments (/proc/<pid>/cmdline, ps). Preloaded into the program, this library
 * wraps its main(): the arguments the program parses are a copy in which the placeholder
 * @EYEOPS_ARGV_SECRET@ is replaced by the first line of the file named in the environment
 * variable EYEOPS_ARGV_SECRET_FILE (mode 0600), while the command line the kernel shows keeps the
 * placeholder. Both variables and LD_PRELOAD are removed before main() runs, so the program's own
 * children (Triton's Python backend stubs) neither see nor load them. A missing or unreadable file
 * ends the program before main() with exit status 78 and one line on stderr: it never starts
 * with the placeholder as its key.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLACEHOLDER "@EYEOPS_ARGV_SECRET@"

typedef int (*main_fn)(int, char **, char **);
typedef int (*start_fn)(main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void), void *);

static main_fn real_main;

static char *with_secret(const char *arg, const char *secret) {
    const char *at = strstr(arg, PLACEHOLDER);
    size_t head = (size_t)(at - arg), tail = strlen(at + strlen(PLACEHOLDER));
    char *out = malloc(head + strlen(secret) + tail + 1);
    if (out == NULL) return NULL;
    memcpy(out, arg, head);
    strcpy(out + head, secret);
    strcpy(out + head + strlen(secret), at + strlen(PLACEHOLDER));
    return out;
}

static int wrapped_main(int argc, char **argv, char **envp) {
    const char *path = getenv("EYEOPS_ARGV_SECRET_FILE");
    char secret[512] = {0};
    int needed = 0;
    for (int i = 1; i < argc; i++) needed |= strstr(argv[i], PLACEHOLDER) != NULL;
    if (needed) {
        FILE *f = path ? fopen(path, "r") : NULL;
        if (f == NULL || fgets(secret, sizeof secret, f) == NULL) {
            fprintf(stderr, "eyeops argv secret: cannot read the secret file named in EYEOPS_ARGV_SECRET_FILE\n");
            exit(78);
        }
        fclose(f);
        secret[strcspn(secret, "\r\n")] = '\0';
    }
    unsetenv("EYEOPS_ARGV_SECRET_FILE");
    unsetenv("LD_PRELOAD");
    char **copy = calloc((size_t)argc + 1, sizeof *copy);
    if (copy == NULL) exit(71);
    for (int i = 0; i < argc; i++) {
        copy[i] = strstr(argv[i], PLACEHOLDER) ? with_secret(argv[i], secret) : argv[i];
        if (copy[i] == NULL) exit(71);
    }
    memset(secret, 0, sizeof secret);
    return real_main(argc, copy, envp);
}

int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void), void (*fini)(void),
                      void (*rtld_fini)(void), void *stack_end) {
    start_fn real = (start_fn)dlsym(RTLD_NEXT, "__libc_start_main");
    real_main = main;
    return real(wrapped_main, argc, argv, init, fini, rtld_fini, stack_end);
}
