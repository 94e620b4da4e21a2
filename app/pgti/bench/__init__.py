"""pgti.bench"""
