/*
 * zygote.c -- the forking process, and the supervisor's side of its socket.
 */
#include "zygote.h"

#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define ZYGOTE_MAX_CHILDREN 4096

typedef struct zchild {
    pid_t pid;
    uint32_t slot;
    uint64_t gen;
} zchild_t;

static zchild_t zchildren[ZYGOTE_MAX_CHILDREN];

static void
zsend(int fd, uint32_t op, uint32_t slot, uint64_t gen, pid_t pid, int status, int err)
{
    kiln__zrep_t r;
    memset(&r, 0, sizeof(r));
    r.op = op;
    r.slot = slot;
    r.gen = gen;
    r.pid = pid;
    r.status = status;
    r.err = err;
    while (send(fd, &r, sizeof(r), MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static zchild_t *
zfind(uint32_t slot, uint64_t gen)
{
    int i;
    for (i = 0; i < ZYGOTE_MAX_CHILDREN; i++)
        if (zchildren[i].pid > 0 && zchildren[i].slot == slot && zchildren[i].gen == gen)
            return &zchildren[i];
    return NULL;
}

static void
zspawn(int fd, const kiln__zreq_t *req, int child_fd, const kiln__caps_t *caps,
       const kiln__filters_t *filters, const sigset_t *oldmask)
{
    zchild_t *slot = NULL;
    kiln__jail_t jail;
    pid_t pid;
    int i;

    for (i = 0; i < ZYGOTE_MAX_CHILDREN && !slot; i++)
        if (zchildren[i].pid == 0)
            slot = &zchildren[i];
    if (!slot) {
        close(child_fd);
        zsend(fd, KILN__ZREP_SPAWNFAIL, req->slot, req->gen, 0, 0, EAGAIN);
        return;
    }
    pid = fork();
    if (pid < 0) {
        int e = errno;
        close(child_fd);
        zsend(fd, KILN__ZREP_SPAWNFAIL, req->slot, req->gen, 0, 0, e);
        return;
    }
    if (pid == 0) {
        kiln__child_opts_t opts;
        close(fd);
        sigprocmask(SIG_SETMASK, oldmask, NULL);
        signal(SIGCHLD, SIG_DFL);
        memcpy(&jail, &req->jail, sizeof(jail));
        jail.keep_fd = child_fd;
        jail.plugin_path[sizeof(jail.plugin_path) - 1] = '\0';
        jail.cgroup_memory_procs[sizeof(jail.cgroup_memory_procs) - 1] = '\0';
        jail.cgroup_pids_procs[sizeof(jail.cgroup_pids_procs) - 1] = '\0';
        jail.settings[sizeof(jail.settings) - 1] = '\0';
        opts.probe = req->probe;
        opts.max_tasks = req->max_tasks;
        kiln__child_main(&jail, caps, filters, &opts);
    }
    close(child_fd);
    slot->pid = pid;
    slot->slot = req->slot;
    slot->gen = req->gen;
    zsend(fd, KILN__ZREP_SPAWNED, req->slot, req->gen, pid, 0, 0);
}

static void
zreap(int fd)
{
    for (;;) {
        int status, i;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (i = 0; i < ZYGOTE_MAX_CHILDREN; i++) {
            if (zchildren[i].pid == pid) {
                zsend(fd, KILN__ZREP_EXITED, zchildren[i].slot, zchildren[i].gen, pid, status, 0);
                zchildren[i].pid = 0;
                break;
            }
        }
        /* Unknown pids are grandchildren re-parented to us (pid ns init). */
    }
}

static void __attribute__((noreturn))
zygote_main(int fd, const kiln__caps_t *caps, const kiln__filters_t *filters, int userns, uid_t uid,
            gid_t gid)
{
    sigset_t mask, oldmask;
    struct pollfd pfd[2];
    char err[256];
    int sfd, i;

    /* In a fresh user namespace, map our own ids so that children can make
     * the nested namespaces their jail asks for.  If this fails they will say
     * so in their INITFAIL. */
    if (userns)
        (void)kiln__ns_map_self(uid, gid, err, sizeof(err));
    prctl(PR_SET_NAME, "kiln-zygote");
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        _exit(1);
    /* Be a well-behaved init: terminate politely on SIGTERM from outside. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    pfd[0].fd = fd;
    pfd[0].events = POLLIN;
    pfd[1].fd = sfd;
    pfd[1].events = POLLIN;
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) > 0)
                ;
            zreap(fd);
        }
        if (pfd[0].revents & POLLIN) {
            kiln__zreq_t req;
            struct msghdr msg;
            struct iovec iov = {&req, sizeof(req)};
            union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
            } ctl;
            struct cmsghdr *c;
            int child_fd = -1;
            ssize_t n;

            memset(&msg, 0, sizeof(msg));
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctl.buf;
            msg.msg_controllen = sizeof(ctl.buf);
            n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
            if (n == 0)
                break;
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                break;
            }
            for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                    c->cmsg_len == CMSG_LEN(sizeof(int)))
                    memcpy(&child_fd, CMSG_DATA(c), sizeof(int));
            if ((size_t)n != sizeof(req)) {
                if (child_fd >= 0)
                    close(child_fd);
                continue;
            }
            if (req.op == KILN__ZREQ_SPAWN && child_fd >= 0) {
                /* The child keeps it across exec-less life; clear CLOEXEC. */
                fcntl(child_fd, F_SETFD, 0);
                zspawn(fd, &req, child_fd, caps, filters, &oldmask);
            } else if (req.op == KILN__ZREQ_KILL) {
                zchild_t *zc = zfind(req.slot, req.gen);
                if (child_fd >= 0)
                    close(child_fd);
                if (zc)
                    kill(zc->pid, req.sig);
            } else if (child_fd >= 0) {
                close(child_fd);
            }
        } else if (pfd[0].revents & (POLLHUP | POLLERR)) {
            break;
        }
    }
    /* Supervisor gone: take every child with us. */
    for (i = 0; i < ZYGOTE_MAX_CHILDREN; i++)
        if (zchildren[i].pid > 0)
            kill(zchildren[i].pid, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    _exit(0);
}

int
kiln__zygote_start(kiln__zygote_t *z, const kiln__caps_t *caps, const kiln__filters_t *filters,
                   char *err, size_t errlen)
{
    int sv[2], bufsz = 4 << 20;
    uid_t uid = getuid();
    gid_t gid = getgid();
    long flags = 0;
    pid_t pid;

    memset(z, 0, sizeof(*z));
    z->fd = -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "zygote socketpair: %s", strerror(errno));
        return -errno;
    }
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    (void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
    if (caps->pidns)
        flags = CLONE_NEWPID | (caps->is_root ? 0 : CLONE_NEWUSER);
    pid = -1;
    if (flags) {
        /* Raw clone behaves like fork here: no thread exists yet. */
        pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
        if (pid < 0)
            snprintf(z->pidns_why, sizeof(z->pidns_why), "clone(CLONE_NEWPID): %s",
                     strerror(errno));
        else
            z->pidns = 1;
    } else {
        snprintf(z->pidns_why, sizeof(z->pidns_why), "the kernel refused a new pid namespace");
    }
    if (pid < 0)
        pid = fork();
    if (pid < 0) {
        int e = errno;
        snprintf(err, errlen, "fork of the zygote: %s", strerror(e));
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    if (pid == 0) {
        close(sv[0]);
        zygote_main(sv[1], caps, filters, z->pidns && (flags & CLONE_NEWUSER), uid, gid);
    }
    close(sv[1]);
    z->fd = sv[0];
    z->pid = pid;
    fcntl(z->fd, F_SETFL, fcntl(z->fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

static int
zreq_send(kiln__zygote_t *z, const kiln__zreq_t *req, int fd)
{
    struct iovec iov = {(void *)req, sizeof(*req)};
    struct msghdr msg;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *c;
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        if (sendmsg(z->fd, &msg, MSG_NOSIGNAL) >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int
kiln__zygote_spawn(kiln__zygote_t *z, uint32_t slot, uint64_t gen, const kiln__jail_t *jail,
                   int probe, uint32_t max_tasks, int child_fd)
{
    kiln__zreq_t *req = calloc(1, sizeof(*req));
    int rc;

    if (!req)
        return -ENOMEM;
    req->op = KILN__ZREQ_SPAWN;
    req->slot = slot;
    req->gen = gen;
    req->probe = probe;
    req->max_tasks = max_tasks;
    memcpy(&req->jail, jail, sizeof(*jail));
    rc = zreq_send(z, req, child_fd);
    free(req);
    return rc;
}

int
kiln__zygote_kill(kiln__zygote_t *z, uint32_t slot, uint64_t gen, int sig)
{
    kiln__zreq_t *req = calloc(1, sizeof(*req));
    int rc;

    if (!req)
        return -ENOMEM;
    req->op = KILN__ZREQ_KILL;
    req->slot = slot;
    req->gen = gen;
    req->sig = sig;
    rc = zreq_send(z, req, -1);
    free(req);
    return rc;
}

int
kiln__zygote_read(kiln__zygote_t *z, kiln__zrep_t *rep)
{
    ssize_t n = recv(z->fd, rep, sizeof(*rep), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return -errno;
    }
    if (n == 0)
        return -EPIPE;
    if ((size_t)n != sizeof(*rep))
        return -EPROTO;
    return 1;
}

void
kiln__zygote_stop(kiln__zygote_t *z)
{
    if (z->fd >= 0) {
        close(z->fd);
        z->fd = -1;
    }
    if (z->pid > 0) {
        while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        z->pid = 0;
    }
}
