"""pgti.train"""
