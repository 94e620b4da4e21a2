"""pgti.dist"""
