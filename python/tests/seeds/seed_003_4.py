# From the seed document 003_1cccc3311fb70cca.txt, program 4, verbatim.
from multiprocessing import Pipe, Process

def func(conn1, conn2):
    conn1.close()
    while True:
        try:
            msg = conn2.recv()
            print(msg)
        except EOFError:
            conn2.close()
            break

if __name__ == '__main__':
    conn1, conn2 = Pipe()
    Process(target=func, args=(conn1, conn2)).start()
    conn2.close()
    for i in range(5):
        conn1.send('Hello %s' % i)
    conn1.close()

# 输出
# Hello 0
# Hello 1
# Hello 2
# Hello 3
# Hello 4

# Process finished with exit code 0

