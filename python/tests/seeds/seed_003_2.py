# From the seed document 003_1cccc3311fb70cca.txt, program 2, verbatim.
from multiprocessing import Pipe, Process

def func(conn):
    while True:
        print(conn.recv())
if __name__ == '__main__':
    conn1, conn2 = Pipe()
    Process(target=func, args=(conn2, )).start()
    for i in range(5):
        conn1.send('Hello %s' % i)

# 输出
# Hello 0
# Hello 1
# Hello 2
# Hello 3
# Hello 4

