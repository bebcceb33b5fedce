# From the seed document 003_1cccc3311fb70cca.txt, program 0, verbatim.
from multiprocessing import Pipe

conn1, conn2 = Pipe()
conn1.send('123456')

print(conn2.recv())

# 输出
# 123456

# Process finished with exit code 0
