/* bench/floor.c -- the least a delivery agent run once per message must do.
 *
 * Owns: the lower bound of deliver-vs-procmail.sh: read the message from
 * stdin, append it to ./floor.mbox under an fcntl lock after a From_ line,
 * fsync, exit 0.  No rcfile, no recipes, no dot-lock, no directory fsync.
 * Never: used for anything but that comparison (it ignores its arguments).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len == cap && !(buf = realloc(buf, cap *= 2)))
            return 75;
        ssize_t n = read(0, buf + len, cap - len);
        if (n < 0)
            return 75;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    int fd = open("floor.mbox", O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0)
        return 73;
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fcntl(fd, F_SETLKW, &fl) < 0)
        return 75;
    char from[80];
    time_t t = time(NULL);
    int n = snprintf(from, sizeof from, "From floor  %s", ctime(&t));
    if (write(fd, from, (size_t)n) < 0 || write(fd, buf, len) < 0 || write(fd, "\n", 1) < 0)
        return 75;
    if (fsync(fd) < 0)
        return 75;
    return close(fd) < 0 ? 75 : 0;
}
