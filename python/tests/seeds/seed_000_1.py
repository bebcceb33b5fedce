# From the seed document 000_9aa813b95f1a9493.txt, program 1, verbatim.
#!/usr/bin/env python
# coding=utf-8

import os
import multiprocessing

"""
匿名管道,默认是全双工模式
"""


def sender(pipe):
    """
    在匿名管道上向父进程发送对象
    """
    pipe.send(['spam'] + [42, 'eggs'])
    pipe.close()


def talker(pipe):
    """
    通过匿名管道发送和接受对象
    """
    pipe.send(dict(name='bob', spam=42))
    reply = pipe.recv()
    print('taker got:', reply)

if __name__ == '__main__':
    # 定义管道的两端
    (parentEnd, childEnd) = multiprocessing.Pipe()
    # 派生了滴啊有管道的子进程
    multiprocessing.Process(target=sender, args=(childEnd,)).start()
    # 输出了管都的内容
    print('parent got:', parentEnd.recv())
    parentEnd.close()

    (parentEnd, childEnd) = multiprocessing.Pipe()
    child = multiprocessing.Process(target=talker, args=(childEnd,))
    child.start()
    print('parent got:', parentEnd.recv())
    parentEnd.send({x * 2 for x in 'spam'})
    child.join()
    print('parent exit')

