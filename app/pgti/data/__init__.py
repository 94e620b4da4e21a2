"""pgti.data"""
