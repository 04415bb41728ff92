/* Loaded into the island's xrootd child (LD_PRELOAD, built by island/xrootd.py at its first start):
   xrootd 5.5 has no directive to listen on one address, so a listening socket it binds to every
   address (0.0.0.0 or ::) is bound to the island's address, ARCHIPEL_BIND_ADDRESS, instead. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    const char *host = getenv("ARCHIPEL_BIND_ADDRESS");
    if (host && *host && addr) {
        struct in_addr v4;
        int is_v4 = inet_pton(AF_INET, host, &v4) == 1;
        if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
            struct sockaddr_in a;
            memcpy(&a, addr, sizeof a);
            if (a.sin_addr.s_addr == htonl(INADDR_ANY) && is_v4) {
                a.sin_addr = v4;
                return real_bind(fd, (struct sockaddr *)&a, sizeof a);
            }
        } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
            struct sockaddr_in6 b;
            memcpy(&b, addr, sizeof b);
            if (IN6_IS_ADDR_UNSPECIFIED(&b.sin6_addr)) {
                if (is_v4) {
                    memset(&b.sin6_addr, 0, sizeof b.sin6_addr);
                    b.sin6_addr.s6_addr[10] = 0xff;
                    b.sin6_addr.s6_addr[11] = 0xff;
                    memcpy(&b.sin6_addr.s6_addr[12], &v4, 4);
                } else if (inet_pton(AF_INET6, host, &b.sin6_addr) != 1) {
                    return real_bind(fd, addr, len);
                }
                return real_bind(fd, (struct sockaddr *)&b, sizeof b);
            }
        }
    }
    return real_bind(fd, addr, len);
}
