# From the seed document 003_1cccc3311fb70cca.txt, program 1, verbatim.
from multiprocessing import Pipe, Process

def func(conn):
    conn.send('Hello')
    pass

if __name__ == '__main__':
    conn1, conn2 = Pipe()
    Process(target=func, args=(conn1,)).start()
    print(conn2.recv())

# 输出
# Hello

# Process finished with exit code 0
