#!/bin/bash
# syscall-latency.sh WSHUB_BENCH STORE OUT
#
# Where a direct message's time goes between the load tool and the server:
# runs `WSHUB_BENCH direct -store STORE -pairs 500 -rate 5`, records the
# read and write system calls of both processes for 4 s in its middle
# (perf record, tracepoints), and prints, from syscall-latency.py, the
# distribution of three segments of each message: the tool's write to the
# server's read of that frame, the server's read to its write of the
# delivery, and that write to the tool's read. STORE is mem, bolt or floor
# (the direct forwarder). Needs perf and root.
set -e
bench=$1 store=$2 out=$3
"$bench" direct -store "$store" -pairs 500 -rate 5 -duration 12s > /dev/null 2>&1 &
b=$!
sleep 5
server=$(pgrep -n -f "$(basename "$bench") serve")
tool=$(pgrep -n -f "$(basename "$bench") direct")
perf record -e syscalls:sys_enter_read,syscalls:sys_exit_read,syscalls:sys_enter_write,syscalls:sys_enter_epoll_pwait,syscalls:sys_exit_epoll_pwait \
	-p "$server,$tool" -o "$out.data" -- sleep 4 > /dev/null 2>&1
wait $b
perf script -i "$out.data" -F pid,tid,time,event,trace > "$out.txt" 2> /dev/null
python3 "$(dirname "$0")/syscall-latency.py" "$out.txt" "$server" "$tool"
